"""Measurements the text-modification validators are built from: word-level similarity, content
kept, shared runs, numbers, names, tone and language cue words. Plain functions of text."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from agents.rag.validators import STOPWORDS, content_words

_TOKEN = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['’-][A-Za-z0-9\u00c0-\u024f]+)*")
NUMBER_WORDS = frozenset(  # "one" is left out: it is more often a pronoun than a number
    "two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    " seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred"
    " thousand million billion".split())
FUNCTION_WORDS = {  # frequent words of each language that are not English words
    "French": frozenset("le la les des est et une du dans pour que qui avec sur pas sont au aux"
                        " ce cette ces par plus leur nous vous ils elle être été très mais ou"
                        " où sa son ses".split()),
    "Spanish": frozenset("el la los las es y una del en para que con por se son al lo como más"
                         " su sus pero muy este esta está están entre también fue"
                         " sobre".split()),
    "German": frozenset("der die das und ist ein eine nicht mit von zu den dem des auf für sich im"
                        " sind wird werden auch nach bei oder aus wie über einer".split()),
    "Italian": frozenset("il lo la gli le è e una del della di che per con non sono nel alla"
                         " anche più dei delle questo questa tra sul".split()),
}
POSITIVE = frozenset(
    "good great excellent wonderful remarkable impressive amazing beautiful best brilliant"
    " delightful enjoy enjoyable exciting fantastic fascinating fortunate fortunately happy"
    " helpful ideal incredible inspiring love lovely marvelous marvellous outstanding perfect"
    " pleasant positive proud reliable rewarding splendid strong success successful superb"
    " thrilling thriving valuable vibrant win wins benefit benefits glad joy joyful"
    " celebrated efficient elegant magnificent".split())
NEGATIVE = frozenset(
    "bad poor terrible awful horrible worst disappointing disappointment sad unfortunately"
    " unfortunate failure fail fails failed problem problems difficult harmful dangerous"
    " tragic tragedy painful useless weak worse worrying worry worried annoying boring dull"
    " grim gloomy bleak miserable negative regret regrettable sadly troubling unpleasant"
    " costly crisis damage damaging loss losses struggle struggles threat risky flawed"
    " unreliable hopeless".split())
PLACEHOLDER = re.compile(r"\[[A-Za-z][A-Za-z _-]{1,30}\]")
BRACKET_NOTE = re.compile(r"\[[^\[\]\n]{2,200}\]")
BOLD = re.compile(r"\*\*[^*\n]+?\*\*|__[^_\n]+?__")
ITALIC = re.compile(r"(?<![*\w])\*(?!\*)[^*\n]+?(?<!\*)\*(?![*\w])"
                    r"|(?<![_\w])_(?!_)[^_\n]+?_(?![_\w])")
MARKUPS = {"bold": BOLD, "italic": ITALIC}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    return [t.lower() for t in tokens(text)]


def similarity(a: str, b: str) -> float:
    """Word-sequence similarity (difflib ratio over lower-cased words), 1.0 for the same words."""
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    return SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def content_recall(source: str, output: str) -> float:
    """Share of the source's content words the output keeps."""
    src = content_words(source)
    return len(src & content_words(output)) / len(src) if src else 1.0


def longest_shared_run(a: str, b: str) -> int:
    wa, wb = words(a), words(b)
    match = SequenceMatcher(None, wa, wb, autojunk=False).find_longest_match(
        0, len(wa), 0, len(wb))
    return match.size


def stopword_share(text: str, vocabulary: frozenset[str]) -> float:
    ws = words(text)
    return sum(w in vocabulary for w in ws) / len(ws) if ws else 0.0


def numbers(text: str) -> set[str]:
    """Digit groups with their separators dropped ("1,435", "1 435" and "1.435" agree)."""
    found = re.findall(r"(?<!\d)\d{1,3}(?:[,.\u00a0 ]\d{3})+(?!\d)|\d+(?:[.,]\d+)?", text)
    return {re.sub(r"\D", "", m) for m in found}


def number_words(text: str) -> list[str]:
    found = []
    for w in words(text):
        found += [p for p in w.split("-") if p in NUMBER_WORDS]
    return found


def proper_nouns(text: str) -> set[str]:
    """Capitalized words that do not start a sentence: names, places, brands."""
    found: set[str] = set()
    for sentence in SENTENCE_END.split(" ".join(text.split())):
        for tok in tokens(sentence)[1:]:
            if tok[0].isupper() and tok.lower() not in STOPWORDS and tok != "I" and len(tok) > 1:
                found.add(tok)
    return found


def polarity(text: str, sentiment: str) -> int:
    """Target-polarity cue words minus opposite-polarity cue words."""
    ws = words(text)
    pos, neg = sum(w in POSITIVE for w in ws), sum(w in NEGATIVE for w in ws)
    return pos - neg if sentiment == "positive" else neg - pos


def has_phrase(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, re.IGNORECASE) is not None


def squash(text: str) -> str:
    return " ".join(text.split()).lower()


def strip_markup(text: str) -> str:
    return re.sub(r"\*\*|__|(?<!\w)[*_]|[*_](?!\w)", "", text)


def banned_words(text: str, n: int) -> list[str]:
    """The input's most frequent content words (4+ letters): rewriting without them is work."""
    counts: dict[str, int] = {}
    for w in words(text):
        if w.isalpha() and len(w) >= 4 and w not in STOPWORDS:
            counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts, key=lambda w: -counts[w])  # stable: first seen wins ties
    return ranked[:n]


def long_words(text: str, max_letters: int, allowed: set[str]) -> tuple[int, int]:
    """(words longer than max_letters, all words), names in `allowed` not counted."""
    ws = [t for t in tokens(text) if t.isalpha() and t not in allowed]
    return sum(len(t) > max_letters for t in ws), len(ws)
