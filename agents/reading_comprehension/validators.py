"""Reading-comprehension validators: pure functions returning a rejection reason, or None.

Question checks run before the answer is paid for (`check_task`); answer checks run on the
teacher's reply (`validate`); transformation and passage-edit checks guard the passage itself.
The generic measures (content words, lexical support, repetition) come from agents/rag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agents.rag.validators import GENERIC, STOPWORDS, content_words
from agents.tools.calculator import CalculatorError, calculate

# -- passages -----------------------------------------------------------------------------------

SPEAKER = re.compile(r"^\W{0,3}([A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,2})\s*(?:\([^)]{0,40}\))?\s*:",
                     re.MULTILINE)
STEP = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022]|step \d+\b)", re.IGNORECASE | re.MULTILINE)
CONCLUSION = re.compile(r"\b(therefore|thus|hence|so|consequently|clearly|it follows|must|"
                        r"should|shows?|proves?)\b", re.IGNORECASE)
PREMISE = re.compile(r"\b(because|since|given|due to|as a result|after all|for example)\b",
                     re.IGNORECASE)
TRANSCRIPTS = {"debate_transcript", "conversation", "meeting_transcript"}


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _facts(text: str) -> set[str]:
    """Tokens that carry a fact: numbers (any length) and content words."""
    return {w for w in _tokens(text) if w.isdigit() or (len(w) > 1 and w not in STOPWORDS)}


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = _tokens(text)
    return set(zip(words, words[1:], words[2:]))


def check_transformed(name: str, seed: str, text: str) -> str | None:
    """A content-transformation agent's output keeps the seed's subject, is not a copy of the
    seed, and has the shape its agent promises (speaker turns, verse lines, steps, reasoning)."""
    seed_words, words = content_words(seed), content_words(text)
    needed = min(10, max(3, round(0.2 * len(seed_words))))
    if len(seed_words & words) < needed:
        return f"{name}: keeps {len(seed_words & words)} of the seed's words, needs {needed}"
    grams = _trigrams(text)
    # a long text may keep the seed verbatim: what it must do is add (checked below)
    if name != "long_text" and grams and len(grams & _trigrams(seed)) / len(grams) > 0.8:
        return f"{name}: copies the seed instead of transforming it"
    if name in TRANSCRIPTS:
        turns = SPEAKER.findall(text)
        if len(turns) < 3 or len(set(turns)) < 2:
            return f"{name}: needs at least three turns by two named speakers ('Name: ...')"
    elif name == "poem":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < 4:
            return f"poem: has {len(lines)} lines, needs at least 4"
        if sum(len(ln.split()) for ln in lines) / len(lines) > 14:
            return "poem: lines run on like prose"
    elif name == "instructional_text":
        if len(STEP.findall(text)) < 2:
            return "instructional_text: needs at least two numbered or bulleted steps"
    elif name == "argument_passage":
        if not (CONCLUSION.search(text) and PREMISE.search(text)):
            return "argument_passage: needs a reason and a conclusion (because ..., therefore ...)"
    elif name == "long_text":
        if len(seed_words & words) < 0.5 * len(seed_words):
            return "long_text: drops most of the seed instead of extending it"
        if len(words - seed_words) < 10:
            return f"long_text: adds {len(words - seed_words)} new words, needs at least 10"
    return None


def locate(passage: str, quote: str) -> tuple[int, int] | None:
    """The span of `quote` in `passage`, ignoring differences in whitespace."""
    words = quote.split()
    if not words:
        return None
    found = re.search(r"\s+".join(map(re.escape, words)), passage)
    return found.span() if found else None


def apply_edit(passage: str, find: str, replace: str) -> str:
    start, end = locate(passage, find) or (0, 0)
    text = passage[:start] + replace.strip() + passage[end:]
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]{2,}", " ", text)).strip()


def check_passage_edit(kind: str, passage: str, question: str, find: str,
                       replace: str) -> str | None:
    """A passage edit for refinement. `remove` (make the question unanswerable) deletes one
    sentence about what the question asks; `change` (make the answer change) alters a fact."""
    if locate(passage, find) is None:
        return "edit quotes words that are not in the passage"
    if kind == "remove":
        if replace.strip():
            return "removal adds text"
        if len(find.split()) < 3:
            return "removed text is too short to hold an answer"
        if not (content_words(find) - GENERIC) & (content_words(question) - GENERIC):
            return "removed text is not about what the question asks"
        left = content_words(apply_edit(passage, find, ""))
        if len(left) < 0.5 * len(content_words(passage)):
            return "edit removes most of the passage"
        return None
    if not replace.strip():
        return "change edit deletes instead of changing"
    if _tokens(find) == _tokens(replace):
        return "replacement changes nothing"
    if not _facts(replace) - _facts(find):
        return "replacement adds no new fact"
    return None


# -- questions ----------------------------------------------------------------------------------

IMPERATIVE = re.compile(
    r"^\W*(summari[sz]e|describe|explain|list|name|give|compare|contrast|outline|state|identify|"
    r"match|arrange|order|put|fill|complete|write|evaluate|discuss|decide|choose|select|suggest|"
    r"paraphrase|restate|rewrite|predict|classify|determine|find|trace|assess|analy[sz]e|"
    r"interpret|calculate|count|judge|pair)\b", re.IGNORECASE)
INLINE_OPTIONS = re.compile(r"(?:^|\s)\(?[A-Da-d1-4][).]\s")
BLANK = re.compile(r"_{3,}")
QUOTED = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d]{2,200})[\"\u201c\u201d]")


def check_question(question: str, expects: str) -> str | None:
    """The question's form: it names a subject, asks one thing, and reads as a question (or a
    request); fill-in-the-blank and verdict types have their own form checks."""
    if len(question.split()) < 4:
        return "question too short"
    if len(content_words(question) - GENERIC) < 2:
        return "question names no subject"
    if question.count("?") > 1:
        return "more than one question"
    if expects != "choice" and len(INLINE_OPTIONS.findall(question)) >= 2:
        return "question carries options of its own"
    if expects not in ("blank", "verdict") and not question.rstrip().endswith("?") \
            and not IMPERATIVE.match(question):
        return "not a question or request"
    return None


def check_blank(question: str) -> str | None:
    n = len(BLANK.findall(question))
    if n != 1:
        return "fill-in-the-blank question has no blank (___)" if n == 0 else \
            f"fill-in-the-blank question has {n} blanks, needs exactly one"
    return None


def check_quoted(question: str, passage: str) -> str | None:
    """Types that work on a given phrase must quote it, and the quote must come from the
    passage (its words occur there, in order)."""
    quotes = QUOTED.findall(question)
    if not quotes:
        return "question quotes no words from the passage"
    source = " ".join(_tokens(passage))
    if not any(_tokens(q) and f" {' '.join(_tokens(q))} " in f" {source} " for q in quotes):
        return "quoted words are not in the passage"
    return None


def check_labels_named(question: str, labels: Sequence[str]) -> str | None:
    words = set(_tokens(question))
    if not all(label.lower() in words for label in labels):
        return f"question does not offer the choice {' or '.join(labels)}"
    return None


# -- answers ------------------------------------------------------------------------------------

NUMBER = re.compile(r"\d|\b(zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                    r"twenty|thirty|forty|fifty|hundred|thousand|million|billion|half|twice|"
                    r"double|triple|dozen)\b", re.IGNORECASE)
NEGATION = re.compile(r"n't\b|\b(not|no|never|neither|nor|cannot|lacks?|absent|silent|without)\b",
                      re.IGNORECASE)
SOURCE_REF = re.compile(r"\b(passage|text|article|author|information|mention\w*|says?|said|"
                        r"stat\w*|gives?|given|provid\w*|contain\w*|specif\w*|detail\w*|"
                        r"discuss\w*|address\w*|indicat\w*|includ\w*|describ\w*|report\w*)\b",
                        re.IGNORECASE)


def check_refuses(answer: str) -> str | None:
    """An unanswerable question's answer says that the passage does not hold the information."""
    if not (NEGATION.search(answer) and SOURCE_REF.search(answer)):
        return "unanswerable answer does not say the passage lacks the information"
    return None


def check_form(answer: str, expects: str, params: dict) -> str | None:
    """The answer's form per the type's `expects` and params."""
    n = len(answer.split())
    if expects == "verdict":
        labels = params["labels"]
        if not re.match(rf"^\W*({'|'.join(map(re.escape, labels))})\b", answer):
            return f"answer does not start with {' or '.join(labels)}"
    if expects == "number" and not NUMBER.search(answer):
        return "numeric answer contains no number"
    if "max_words" in params and n > params["max_words"]:
        return f"{expects} answer runs to {n} words, at most {params['max_words']}"
    if "min_words" in params and n < params["min_words"]:
        return f"{expects} answer has {n} words, needs at least {params['min_words']}"
    return None


def _norm(text: str) -> str:
    return " ".join(_tokens(text))


def check_items(items: Sequence[str], min_items: int) -> str | None:
    """List and ordering answers: enough distinct items, each saying something."""
    if len(items) < min_items:
        return f"answer lists {len(items)} item(s), needs at least {min_items}"
    if any(not content_words(i) and not re.search(r"\d", i) for i in items):
        return "a listed item is empty of content"
    if len({_norm(i) for i in items}) < len(items):
        return "answer lists the same item twice"
    return None


def check_pairs(pairs: Sequence[tuple[str, str]], min_items: int) -> str | None:
    """Matching answers: enough pairs, each side with content, each left item matched once, and
    no item matched with itself."""
    if len(pairs) < min_items:
        return f"answer matches {len(pairs)} pair(s), needs at least {min_items}"
    if any(not content_words(side) and not re.search(r"\d", side)
           for pair in pairs for side in pair):
        return "a matched item is empty of content"
    if len({_norm(left) for left, _ in pairs}) < len(pairs):
        return "answer matches the same item twice"
    if any(_norm(left) == _norm(right) for left, right in pairs):
        return "answer matches an item with itself"
    return None


def check_blank_answer(question: str, answer: str, passage: str, max_words: int) -> str | None:
    """The missing word: short, not already in the question, and it restores the passage's own
    wording around the blank."""
    words = _tokens(answer)
    if not words:
        return "blank answer is empty"
    if len(answer.split()) > max_words:
        return f"blank answer runs to {len(answer.split())} words, at most {max_words}"
    before, _, after = question.partition(BLANK.search(question).group()) \
        if BLANK.search(question) else (question, "", "")
    if set(content_words(answer)) and content_words(answer) <= content_words(before + " " + after):
        return "blank answer already appears in the question"
    filled = _tokens(before)[-1:] + words + _tokens(after)[:1]
    if f" {' '.join(filled)} " not in f" {_norm(passage)} ":
        return "the filled-in blank does not match the passage's wording"
    return None


_NUMERAL = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20,
                 "dozen": 12, "hundred": 100, "thousand": 1000, "million": 1e6, "billion": 1e9,
                 "half": 2, "twice": 2, "double": 2, "triple": 3, "percent": 100}
_SYMBOLS = str.maketrans({"\u00d7": "*", "\u00f7": "/", "\u2212": "-"})


def numbers_in(text: str, words: bool = False) -> list[float]:
    """The numbers a text writes in digits (thousands commas allowed), and with `words` also
    those it spells out (for a passage: "twice" supplies the operand 2)."""
    found = [float(n.replace(",", "")) for n in _NUMERAL.findall(text)]
    if words:
        found += [_NUMBER_WORDS[w] for w in _tokens(text) if w in _NUMBER_WORDS]
    return found


def evaluate(calculation: str) -> float:
    """The calculator tool on the teacher's arithmetic, after unifying its notation."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", calculation.strip().rstrip("=").strip())
    text = re.sub(r"(?<=[\d\s)])x(?=[\s\d(])", "*", text.translate(_SYMBOLS))
    return float(calculate(text))


def check_calculation(calculation: str, answer: str, passage: str) -> str | None:
    """A numerical answer shows its arithmetic: the calculation evaluates, uses only numbers the
    passage gives, and its result is the number the answer states (to rounding)."""
    try:
        value = evaluate(calculation)
    except (CalculatorError, OverflowError, ValueError) as exc:
        return f"calculation does not evaluate: {exc}"
    given = numbers_in(passage, words=True)
    for operand in numbers_in(calculation):
        if not any(abs(operand - g) < 1e-9 for g in given):
            return f"calculation uses {operand:g}, which the passage does not give"
    if not any(abs(n - value) <= 0.01 * max(1.0, abs(value)) for n in numbers_in(answer)):
        return f"answer does not state the calculated {value:g}"
    return None


def check_grounding(support: float, minimum: float) -> str | None:
    if support < minimum:
        return f"answer not supported by the passage (support {support:.2f} < {minimum:.2f})"
    return None


def check_verdict(key: str, verdict: str) -> str | None:
    if key != verdict:
        return f"teacher judged {verdict}, the key says {key}"
    return None


def check_reflects_edit(answer: str, find: str, replace: str) -> str | None:
    """After the passage was changed so that the answer changes, the answer must use what the
    change introduced (otherwise nothing shows the answer changed)."""
    new = _facts(replace) - _facts(find)
    if new and not new & set(_tokens(answer)):
        return "answer does not reflect the edited passage"
    return None
