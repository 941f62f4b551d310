"""RAG validators: plain functions that return a rejection reason, or None when the item passes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import numpy as np

from agents.spec import Subcategory

# a possessive's "'s" is not part of its word: "debian-installer's" names debian-installer
_WORD = re.compile(r"[a-z0-9]+(?:(?:[.-]|'(?!s\b))[a-z0-9]+)*")
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its"
    " this that these those there here which who whom whose what when where why how do does did not"
    " no yes can could should would will shall may might must have has had than then so such into"
    " about over under also only any all each both more most other some their they them he she his"
    " her we you your our i me my one two use used using".split())
# words that say nothing about a subject: a question made only of these is about nothing
GENERIC = frozenset("answer answers question questions source sources text texts passage passages"
                    " document documents information statement statements following given example"
                    " mentioned described stated according provide provided details detail topic"
                    " topics subject".split())
REFUSAL_CUES = ("not", "no ", "cannot", "can't", "unable", "unknown", "n't", "none of the")
# a refusal says, in one sentence, that the documents (or what they give) lack the answer:
# a negation next to what it negates, not a negation anywhere and a "contains" somewhere else
_REFUSAL_NOUN = re.compile(r"\b(documents?|sources?|texts?|passages?|excerpts?|articles?"
                           r"|information|context|data|details?|mention)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(not|no|cannot|none|nothing|neither|nor|lacks?|without|unable)\b"
                       r"|n't\b", re.IGNORECASE)
_NOT_TOLD = re.compile(r"\b(not|never|nowhere)\s+(\w+\s+)?(mentioned|stated|specified|provided"
                       r"|given|covered|described|available|included|found|addressed|discussed"
                       r"|explained|listed)\b", re.IGNORECASE)
# a colon ends a repeatable unit too ("The answer to your question is: The answer to ...")
SENTENCE_END = re.compile(r"(?<=[.!?:])\s+")
YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
# requests a user types without a question mark ("How to rotate the nftables log?" as often
# without it): a request, not a statement
IMPERATIVE = re.compile(r"^\W*(summari[sz]e|describe|explain|list|name|give|compare|outline|state"
                        r"|how to)\b", re.IGNORECASE)
META_REFERENCE = re.compile(r"\b(the|this|given|above|following) (passage|text|excerpt)s?\b",
                            re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def content_words(text: str) -> frozenset[str]:
    """The words that carry meaning. Remembered: every validator of every item asks this of
    its seed passage again, and the items of one chunk share it."""
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1)


def check_question(question: str) -> str | None:
    """Cheap checks run before the (expensive) answer is generated. A short question naming
    one thing ("What is nftables?") passes: whether it is specific enough to its source is the
    retrieval round trip's call, which measures it instead of counting words."""
    words = question.split()
    if len(words) < 3:
        return "question too short"
    if not content_words(question) - GENERIC:
        return "question has no content words"
    if META_REFERENCE.search(question):
        return "question refers to 'the passage' instead of naming its subject"
    if not question.rstrip().endswith("?") and not IMPERATIVE.match(question):
        return "not a question or request"
    return check_repetition(question)


def _singular(word: str) -> str:
    """A plural's singular, roughly ("colonies" → "colony", "managers" → "manager")."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def check_on_topic(question: str, passages: list[str]) -> str | None:
    """A question written from a passage names something in it, singular or plural ("manager"
    is found in "managers"). Not by a shorter stem: 5-letter prefixes passed twice as many
    questions that then failed at the answer (bench/RESULTS.md, session 17)."""
    subject = {_singular(w) for w in content_words(question) - GENERIC}
    source = {_singular(w) for p in passages for w in content_words(p)}
    if not subject & source:
        return "question shares no subject word with its source passage"
    return None


def lexical_support(answer: str, passages: list[str]) -> float:
    """Share of the answer's content words that occur in the passages it cites."""
    words = content_words(answer)
    if not words:
        return 0.0
    source = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(words & source) / len(words)


def check_adds_information(question: str, answer: str, min_novelty: float = 0.3) -> str | None:
    """An answer that only restates the question is fully 'supported' by any passage that the
    question came from, and teaches nothing: require words the question does not have."""
    answer_words = content_words(answer)
    new = answer_words - content_words(question)
    if not new or (len(answer_words) >= 3 and len(new) / len(answer_words) < min_novelty):
        return "answer only restates the question"
    return None


_WORD_CASED = re.compile(_WORD.pattern, re.IGNORECASE)  # content_words' words, case kept


def _stems(text: str, names: bool) -> set[str]:
    """5-letter stems of a text's content words; without `names`, a word the text only writes
    capitalised inside a sentence (part of a name, "United States Geological Survey") is left
    out."""
    words = content_words(text) - GENERIC
    if not names:
        common = {m.group(0).lower() for m in _WORD_CASED.finditer(text)
                  if not m.group(0)[:1].isupper() or _SENTENCE_START.search(text[:m.start()])}
        words &= common
    return {w[:5] for w in words}


def check_relevance(question: str, answer: str, cosine: float, min_cosine: float = 0.27,
                    min_words: int = 5) -> str | None:
    """An answer about something else than its question: "How many states have a coastline?"
    answered "The United States Geological Survey (USGS) estimates that Earth holds about 1.386
    billion cubic kilometres of water" (kept from a real run: every name and number is in its
    documents, so the grounding checks pass). Rejected only when all three agree: the answer
    says enough to be judged (a short one such as "Raphaël Hertzog and Roland Mas." is far from
    "Who wrote ...?" in embedding space too), it shares no word stem with the question (a word
    it uses only inside a name, "States" above, does not count unless the question names it
    too), and the two are far apart (`cosine` of their embeddings). The cosine bound is low
    because a right, concise answer can share no word and still sit at ~0.3 ("When was Debian
    founded?" → "Ian Murdock announced the project on 16 August 1993 ...": 0.29)."""
    said = content_words(answer) - GENERIC
    if len(said) < min_words or cosine >= min_cosine:
        return None
    if _stems(answer, names=False) & _stems(question, names=True):
        return None
    return "answer is not about its question"


def check_citations(citations: list[int], n_documents: int, answerable: bool,
                    sub: Subcategory) -> str | None:
    if not sub.answerable:
        if answerable:
            return "unanswerable question answered as if answerable"
        if citations:
            return "unanswerable question must not cite documents"
        return None
    if not answerable:
        return "answerable question declared unanswerable"
    if not citations:
        return "answer cites no document"
    outside = [c for c in citations if not 1 <= c <= n_documents]
    if outside:
        return f"cites document(s) {outside} not among the {n_documents} given"
    return None


def check_refusal(answer: str) -> str | None:
    """A refusal says that the documents (or the information) lack the answer. Checked within
    one sentence: a negation and a "contains" anywhere passed "The list contains only pending
    tasks that have not been cancelled" (kept from a real run), and a negation alone passes
    "This is an answer, but it is not a detailed answer"."""
    for sentence in re.split(r"(?<=[.!?;])\s+", answer):
        if (_REFUSAL_NOUN.search(sentence) and _NEGATION.search(sentence)) \
                or _NOT_TOLD.search(sentence):
            return None
    return "unanswerable answer does not say the documents lack the answer"


def check_repeated_sentence(answer: str, min_words: int = 5, max_overlap: float = 0.7
                            ) -> str | None:
    """A small teacher says a sentence of its answer twice (looser than the trigram loop
    check, which misses two copies in a longer answer), often reworded ("The document is not
    available to edit. The document is not available for edit.") or negated ("... contains
    multiple options. ... does not contain multiple options."): two sentences of `min_words`
    words or more whose content-word stems overlap by `max_overlap` (Jaccard) or more. Read on
    252 kept answers: the 32 this catches at 0.7 all restate, loop or contradict themselves;
    sentences of a good answer that share its subject overlap 0.25–0.45. For answers, not for
    poems' refrains."""
    seen: list[tuple[tuple[str, ...], set[str]]] = []
    for sentence in SENTENCE_END.split(answer):
        words = tuple(_WORD.findall(sentence.lower()))
        if len(words) < min_words:
            continue
        stems = _stems(sentence, names=True)
        for other, other_stems in seen:
            if words == other or (stems and len(stems & other_stems) / len(stems | other_stems)
                                  >= max_overlap):
                return "answer repeats a sentence"
        seen.append((words, stems))
    return None


def check_looping(answer: str, n: int = 4, times: int = 3) -> str | None:
    """A phrase of `n` words said `times` times or more: the loop a small teacher pads an
    answer with, each turn reworded enough to pass the trigram-diversity bound and the
    sentence-overlap check ("It is a meta-package that is built by ... It is a meta-package that
    contains ...", "This is a feature that is not available in IPv4, and it is a feature that
    ..."). Read on 449 distinct RAG answers kept by earlier runs (bench/RESULTS.md, session 21):
    53 have one, all but a few loops, padding or the same claim three times; an answer of up to
    600 characters that says something repeats a 4-word phrase at most twice."""
    words = _WORD.findall(answer.lower())
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= times:
            return "answer repeats a phrase"
    return None


def check_complete(answer: str, max_chars: int) -> str | None:
    """An answer that fills its length limit and stops mid-sentence was cut off by the schema;
    one that ends on a colon stopped before what it announces ("The command is:")."""
    if len(answer) >= 0.9 * max_chars and answer.rstrip()[-1:] not in '.!?)]"\'`':
        return "answer cut off at its length limit"
    if answer.rstrip().endswith(":"):
        return "answer stops before what it announces"
    return None


# the respond prompt's own instructions, which a small teacher copies as its answer
# ("The documents do not contain this information: say so in one sentence.")
PROMPT_ECHOES = ("say so in one sentence", "reply in json", "answer briefly with facts",
                 "cite the documents you", "using only the documents provided")
_PROSE_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[.,;:!?)]*")


# the user turn's own header of a document ("Document [1] (debian-handbook/sect.x.html):")
DOCUMENT_HEADER = re.compile(r"\bdocument \[\d+\] \(", re.IGNORECASE)


def check_echo(answer: str) -> str | None:
    text = " ".join(answer.lower().split())
    if echo := next((e for e in PROMPT_ECHOES if e in text), None):
        return f"answer copies the prompt's instructions ('{echo}')"
    if DOCUMENT_HEADER.search(answer):
        return "answer copies a document's header from the prompt"
    return None


def check_form(answer: str, expects: str) -> str | None:
    if expects == "yes_no" and not YES_NO.match(answer):
        return "yes/no answer does not start with Yes or No"
    if expects == "number" and not re.search(r"\d", answer):
        return "numeric answer contains no number"
    if expects == "list" and not re.search(r",|;|\n|\band\b", answer):
        return "list answer names fewer than two items"
    # explanations and summaries are a few sentences, a multi-hop answer at least one: not a
    # heading, a path or a bracketed number (each seen accepted before these forms)
    if expects in ("prose", "sentence"):
        words = answer.split()
        least = 12 if expects == "prose" else 6
        if len(words) < least or sum(bool(_PROSE_WORD.fullmatch(w)) for w in words) \
                < 0.6 * len(words):
            return "answer is not a few sentences of prose" if expects == "prose" \
                else "answer is not a sentence"
    return None


# "6.7.2. Handling ..." and "12.3.2 Creating ..." are headings; "1.5 million" is a number
SECTION_HEADING = re.compile(r"^\W*\d+(\.\d+)+\.\s|^\W*\d+(\.\d+){2,}\s")


def check_not_heading(answer: str, documents: Sequence[str] = ()) -> str | None:
    """A small teacher answers with the section title of the passage ("6.7.2. Handling
    Problems After an Upgrade"), or with a whole title or heading line of a document ("The
    Printing Press | History Notes"): a line of three words or more that ends without a
    sentence's punctuation. None of 228 kept answers was such a line."""
    if SECTION_HEADING.match(answer):
        return "answer is a section heading"
    said = answer.strip().rstrip(".").strip()
    if len(said.split()) >= 3 and said[-1:] not in ".!?:;,":
        for document in documents:
            if any(line.strip() == said for line in document.splitlines()):
                return "answer is a heading of its document"
    return None


def check_repetition(text: str, min_distinct: float = 0.5) -> str | None:
    """Small teachers loop ("the answer is that the answer is that ..."): few distinct trigrams."""
    words = text.lower().split()
    trigrams = list(zip(words, words[1:], words[2:]))
    if len(trigrams) >= 12 and len(set(trigrams)) / len(trigrams) < min_distinct:
        return "degenerate repetition"
    return None


# a name or a number: a capitalised word inside a sentence, or a token with a digit
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[.'’][A-Za-z0-9]+)*")
_SENTENCE_START = re.compile(r"(^|[.!?:]\s+|\n\s*([-*•]\s*)?)$")
_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def specifics(text: str) -> list[str]:
    """The names and numbers a text states: capitalised words not at a sentence's start, and
    tokens with a digit. Hyphenated words count by part ("Windows-based" names Windows), a
    possessive or contraction by its stem ("IPv4's", "I'm")."""
    text = _LIST_MARKER.sub("", _CITATION.sub(" ", _THOUSANDS.sub("", text)))
    found = []
    for match in _TOKEN.finditer(text):
        token = re.split(r"['’](?:s|m|re|ve|ll|d|t)$", match.group(0), flags=re.IGNORECASE)[0]
        digit = any(c.isdigit() for c in token)
        if digit or (token[:1].isupper() and token != "I" and token.lower() not in STOPWORDS
                     and not _SENTENCE_START.search(text[:match.start()])):
            found.append(token)
    return found


def _computed(number: str, operands: set[float]) -> bool:
    """A number that is the sum, difference, product or ratio of two known numbers, as precise
    as it is written ("1659" exactly, "0.33" within 0.005): a 1% margin let invented numbers
    through as computed from some pair of a document's many ("discovered on 13 March 1659",
    "62.9 years old"). All pairs of at most 200 numbers at once: this runs on the event loop."""
    value = float(number)
    tolerance = 0.5 * 10.0 ** -len(number.partition(".")[2])
    a = np.array(sorted(operands)[:200])[:, None]
    b = a.T
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        results = np.stack([a + b, a - b, a * b, a / b])  # x / 0 is inf or nan: never close
    return bool((np.abs(results - value) <= tolerance + 1e-9).any())


NUMBER_WORDS = {w: str(n) for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())} | {
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
    "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000", "dozen": "12"}


def _stated_in(sources: list[str]) -> tuple[Callable[[str], bool], str]:
    """A test of whether a name or number is stated in `sources` (a number also as a word:
    "ten gates" → 10), ignoring case."""
    source_text = _THOUSANDS.sub("", " ".join(sources)).lower()
    known = set(_TOKEN.findall(source_text))
    known |= {NUMBER_WORDS[w] for w in known & NUMBER_WORDS.keys()}

    def stated(token: str) -> bool:
        word = token.lower()
        return word in known or bool(
            re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", source_text))
    return stated, source_text


def check_specifics(answer: str, sources: list[str], shown: str = "") -> str | None:
    """Every name and number an answer states is in its documents or its question (a number
    also as a word: "ten gates" → 10): a small teacher wraps an invented date, place or version
    in the documents' subject ("... occurred on October 25, 2014, in Dubai"), which passes a
    cosine check on its topic words. A number may be computed from two known numbers that the
    record shows, in the answer or in `shown` (its question, a calculation it shows): "opened in
    1984 ... completed in 1997, so 13 years later"; "How long from 1990 to 2002?" → "12 years".
    Not from any two of the documents' numbers, as numeric answers once could: some pair of a
    document's many numbers sums to almost any small count, and the numeric answers kept that
    way by earlier runs were all invented ("The firewall limits 12 ports", "14 books";
    bench/RESULTS.md, session 21)."""
    stated, _ = _stated_in(sources)
    said = specifics(answer)
    missing = [t for t in said if not stated(t)]
    if missing:
        known = [t for t in said if _NUMBER.fullmatch(t) and stated(t)]
        operands = {float(n) for n in known + _NUMBER.findall(_THOUSANDS.sub("", shown))}
        missing = [t for t in missing if not (_NUMBER.fullmatch(t) and _computed(t, operands))]
    if missing:
        return "answer states names or numbers its documents do not"
    return None


_COUNT = re.compile(r"[1-9]|10")  # "Name 3 commands ...": a count asked for, not a fact


def check_question_specifics(question: str, passages: list[str]) -> str | None:
    """A question of an answerable type names only what its passages state. The teacher
    invents a date or a name and asks about it ("What steps in printing a Bible were made by a
    Chinese artisan in 1512?" of a passage with 1040; "Is heapq implemented in Python 3.10, or
    in 1.1.1.1.1?"), and its answer may then repeat the invention, since an answer may name
    what its question names. Of 354 answerable records kept by earlier runs it rejects 36, each
    naming an invention ("Benoît Guillillon", "removable hard Drinks", "a 2013-2020 edition")
    or what the passage never mentions ("on a Windows system"). A small count is left alone
    ("List 3 ...")."""
    stated, _ = _stated_in(passages)
    if any(not stated(t) for t in specifics(question) if not _COUNT.fullmatch(t)):
        return "question names or numbers what its passages do not"
    return None


def check_grounding(lexical: float, cosine: float, min_lexical: float = 0.5,
                    min_cosine: float = 0.6) -> str | None:
    """An answer passes if most of its words come from the cited documents, or if it is close to
    them in embedding space (paraphrase)."""
    if lexical >= min_lexical or cosine >= min_cosine:
        return None
    return "answer not supported by cited documents"
