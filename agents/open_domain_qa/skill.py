"""Open-domain QA: the seed only suggests a subject. The student sees a self-contained question
and no passage; the teacher answers from general knowledge (the seed is background it must not
mention). Validators check that the question stands on its own, has the form its type asks for,
and that the answer adds information, has the length of its tier and never cites a text."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, create_model, field_validator

from agents.flow import FlowContext, Question, first_question
from agents.rag.validators import (GENERIC, check_adds_information, check_form, check_on_topic,
                                   check_repetition, content_words, lexical_support)
from agents.task import Draft, TaskSkill

EASY_MAX_WORDS = 80
COMPLEX_MIN_WORDS = 40
COMPLEX_MIN_SENTENCES = 2
QUESTION_MAX_WORDS = 60

_TEXTS = r"(?:passage|text|excerpt|article|document|notes|paragraph|reading|extract|snippet)"
# a reference to a text the reader of an open-domain question never sees; "the text of the
# treaty", "the passage of time" and "the author of Hamlet" are about the world, not a text
META_REFERENCE = re.compile(
    r"\baccording to (?:the|this|these|that) (?:" + _TEXTS[3:-1] + r"|author|writer|source)s?\b"
    r"|\b(?:the|this|these|that|given|provided|following) " + _TEXTS + r"s?\b(?!\s+(?:of|on|in)\b)"
    r"|\bthe (?:author|writer|narrator)(?:'s)?\b(?!\s+of\b)"
    r"|\b(?:mentioned|described|discussed|stated|listed|shown|cited|referred to|given)"
    r" (?:above|below|earlier|previously)\b"
    r"|\b(?:the above|aforementioned|above-mentioned|background notes)\b",
    re.IGNORECASE)
DANGLING = re.compile(r"^\W*(?:it|its|they|their|them|this|that|these|those|he|she|his|her)\b",
                      re.IGNORECASE)
IMPERATIVE = re.compile(r"^\W*(?:describe|explain|define|list|name|give|compare|contrast|outline"
                        r"|state|identify|summari[sz]e)\b", re.IGNORECASE)
REFUSAL = re.compile(r"\b(?:i (?:do not|don't|cannot|can't) (?:know|say|answer)|i am not sure"
                     r"|i'm not sure|cannot be answered|no information|not (?:mentioned|provided"
                     r"|stated|given|specified) (?:in|by)|unable to (?:answer|determine))\b",
                     re.IGNORECASE)
FRAGMENTS = re.compile(r"\s\|\s|\|\s*$|^\s*#|\n\s*#|#\w", re.MULTILINE)
DEFINING = re.compile(r"\b(?:is|are|was|were|means|meant|refers?|describes?|denotes?|consists?"
                      r"|involves?|called|defined)\b", re.IGNORECASE)
LABEL = re.compile(r"^\W*(?:question|q)\s*\d*\s*[:.)-]\s*", re.IGNORECASE)

# the form each type's question must have (expects -> pattern, reason)
QUESTION_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "wh": (re.compile(r"\b(?:who|whom|whose|what|when|where|which|how (?:many|much|long|far|old"
                      r"|big|tall|large|fast|often|deep|high))\b", re.IGNORECASE),
           "factual question is not a who/what/when/where/which/how-many question"),
    "definition": (re.compile(r"\b(?:what (?:is|are|was|were) (?:a|an|the)?|define|definition"
                              r"|meaning|what does .{1,60} mean|what is meant|stand for)\b",
                              re.IGNORECASE),
                   "definition question does not ask what a term means"),
    "list": (re.compile(r"\b(?:name|list|what are|which are|give|examples?|types|kinds|parts"
                        r"|members|components|steps|stages|ways|some|several|main)\b",
                        re.IGNORECASE),
             "list question does not ask for several items"),
    "yes_no": (re.compile(r"^\W*(?:is|are|was|were|do|does|did|can|could|should|would|will|has"
                          r"|have|had|may|might|must|shall)\b", re.IGNORECASE),
               "yes/no question does not start with an auxiliary verb"),
    "how_why": (re.compile(r"\b(?:how|why|explain|what causes|what makes|in what way"
                           r"|what happens)\b", re.IGNORECASE),
                "how/why question asks neither how nor why"),
    "compare": (re.compile(r"\b(?:compare|comparison|contrast|differ|differs|different|difference"
                           r"|differences|distinguish|versus|vs|similar|similarity|similarities"
                           r"|alike|better|worse|advantages?|disadvantages?)\b", re.IGNORECASE),
                "comparison question does not ask for a comparison"),
    "multi_part": (re.compile(r"\b(?:and|then|after|before|if|when|because|so|given|therefore"
                              r"|lead to|leads to|result|affect|affects|effect|consequence)\b",
                              re.IGNORECASE),
                   "multi-step question links no two facts or steps"),
}
TWO_THINGS = re.compile(r"\b(?:and|or|vs|versus|with|from|to)\b", re.IGNORECASE)
MULTI_STEP_MIN_WORDS = 10


class OpenQuestion(Question):  # the shared question's schema floor and stop at "?"
    @field_validator("question")
    @classmethod
    def _one_question(cls, value: str) -> str:
        # small teachers label the question and run on past it into the answer
        return first_question(LABEL.sub("", value.strip()))


class OpenAnswer(BaseModel):
    answer: str = Field(min_length=1, max_length=500)


def sentences(text: str) -> list[str]:
    """Sentences of at least three words (so "e.g." or "Dr." do not count as sentences)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", " ".join(text.split()))
    return [p for p in parts if len(p.split()) >= 3]


def check_no_meta_reference(text: str, what: str = "question") -> str | None:
    if m := META_REFERENCE.search(text):
        return f"{what} refers to a text ('{m.group(0)}'), which the reader never sees"
    return None


def check_self_contained(question: str) -> str | None:
    """A question a stranger can answer: names a subject, asks something, refers to no text."""
    words = question.split()
    if len(words) < 4:
        return "question too short"
    if len(words) > QUESTION_MAX_WORDS:
        return f"question too long ({len(words)} words > {QUESTION_MAX_WORDS})"
    if problem := check_no_meta_reference(question):
        return problem
    if len(content_words(question) - GENERIC) < 2:
        return "question names no subject"
    if DANGLING.match(question):
        return "question starts with a pronoun that has no referent"
    if not question.rstrip().endswith("?") and not IMPERATIVE.match(question):
        return "not a question or request"
    return check_repetition(question)


def check_question_form(question: str, expects: str) -> str | None:
    form = QUESTION_FORMS.get(expects)
    if form and not form[0].search(question):
        return form[1]
    if expects == "compare" and not TWO_THINGS.search(question):
        return "comparison question does not name two things"
    if expects == "multi_part" and len(question.split()) < MULTI_STEP_MIN_WORDS:
        return "multi-step question too short to need several steps"
    return None


def check_answer_length(answer: str, tier: str) -> str | None:
    words = len(answer.split())
    if tier == "easy" and words > EASY_MAX_WORDS:
        return f"easy answer too long ({words} words > {EASY_MAX_WORDS})"
    if tier == "complex":
        if words < COMPLEX_MIN_WORDS:
            return f"complex answer too short ({words} words < {COMPLEX_MIN_WORDS})"
        if len(sentences(answer)) < COMPLEX_MIN_SENTENCES:
            return "complex answer is not several sentences"
    return None


def check_prose(answer: str, expects: str) -> str | None:
    """Small teachers answer with headings or "a | b | c" runs of the subject's names."""
    if FRAGMENTS.search(answer):
        return "answer is a run of fragments or markup, not prose"
    if expects == "definition" and not DEFINING.search(answer):
        return "definition answer defines nothing (no is/are/means/refers to)"
    return None


def check_not_refusal(answer: str) -> str | None:
    if m := REFUSAL.search(answer):
        return f"answer is a refusal ('{m.group(0)}')"
    return None


def check_answer_on_topic(question: str, answer: str) -> str | None:
    """A long answer names what it is about; an easy one ("Paris.") need not repeat it."""
    if not (content_words(question) - GENERIC) & content_words(answer):
        return "answer shares no subject word with the question"
    return None


class OpenDomainQaSkill(TaskSkill):
    task_model = OpenQuestion

    def instruction_text(self, draft: Draft) -> str:
        return draft.task.question

    def tier(self, draft: Draft) -> str:
        return draft.sub.params.get("tier", "easy")

    def check_task(self, draft: Draft) -> str | None:
        question = draft.task.question
        return (check_self_contained(question)
                or check_question_form(question, draft.sub.expects)
                or check_on_topic(question, [draft.passage]))

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        if self.tier(draft) == "complex":  # the constraint keeps a small teacher writing
            return create_model("ComplexAnswer", __base__=OpenAnswer,
                                answer=(str, Field(min_length=120, max_length=1200)))
        return OpenAnswer

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        question, answer, tier = draft.task.question, draft.answer.answer.strip(), self.tier(draft)
        draft.scores["answer_words"] = len(answer.split())
        draft.scores["answer_sentences"] = len(sentences(answer))
        draft.scores["background_support"] = lexical_support(answer, [draft.passage])
        draft.extra["tier"] = tier
        draft.extra["seed_topic_overlap"] = sorted(
            (content_words(question) - GENERIC) & content_words(draft.passage))[:8]
        return (check_no_meta_reference(answer, "answer")
                or check_not_refusal(answer)
                or check_answer_length(answer, tier)
                or check_prose(answer, draft.sub.expects)
                or check_form(answer, draft.sub.expects)
                or check_adds_information(question, answer)
                or (check_answer_on_topic(question, answer) if tier == "complex" else None)
                or check_repetition(answer))


SKILL = OpenDomainQaSkill
