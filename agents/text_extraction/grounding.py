"""Does a value come from a text? Normalisation shared by the extraction and data-to-text skills:
case, whitespace, quotes and dashes, thousands separators (1,000 = 1000), trailing zeros
(2.50 = 2.5) and percent signs (60% = 60 percent)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from agents.rag.validators import content_words

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT = re.compile(r"(\d)\s*(?:%|per\s+cent\b)")
_DECIMAL = re.compile(r"\d+\.\d+")
# a number not glued to a letter before it ("CO2", "A4" hold no quantity); "20th" keeps 20
_NUMBER = re.compile(r"(?<![a-z\d.])\d+(?:\.\d+)?")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
_EDGE = " \t\n.,;:!?\"'()[]{}*_`"
PLACEHOLDERS = frozenset({"...", "…", "-", "--", "n/a", "na", "none", "null", "unknown", "tbd",
                          "?", "etc", "value", "text", "string"})


def _canonical_decimal(m: re.Match) -> str:
    return m.group().rstrip("0").rstrip(".")


def normalize(value: object) -> str:
    """The comparable form of a value: lower case, single spaces, plain quotes and dashes,
    numbers without thousands separators or trailing zeros."""
    text = unicodedata.normalize("NFKC", str(value)).lower()
    text = text.translate(str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"',
                                         "\u201d": '"', "\u2013": "-", "\u2014": "-",
                                         "\u2212": "-", "\u00a0": " "}))
    text = _THOUSANDS.sub("", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _DECIMAL.sub(_canonical_decimal, text)
    return " ".join(text.split())


def is_placeholder(value: object) -> bool:
    """Blank, or a stand-in the small teacher copies from the prompt's JSON shape ("...")."""
    text = normalize(value).strip(_EDGE)
    return not text or text in PLACEHOLDERS


def numbers(text: str) -> set[str]:
    """The numbers a text states, normalised (1,000 and 1000.0 both give "1000")."""
    return set(_NUMBER.findall(normalize(text)))


@lru_cache(maxsize=256)
def _sentences(source: str) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(content_words(s)) for s in _SENTENCE.split(normalize(source)) if s)


def occurs(value: object, source: str) -> bool:
    """The value is written in the source: verbatim after normalisation (on word boundaries), or
    every content word and number of it stands in one sentence of the source ("Mount Etna,
    Sicily" from "Mount Etna in Sicily"; "24 August 2006" from "August 24, 2006"). A value of
    stopwords only never occurs."""
    needle = normalize(value).strip(_EDGE)
    if not needle or needle in PLACEHOLDERS:
        return False
    words = content_words(needle)
    if not words and not _NUMBER.search(needle):
        return False  # "the", "of": a value made of stopwords says nothing
    hay = normalize(source)
    if re.search(r"(?<![a-z0-9])" + re.escape(needle) + r"(?![a-z0-9])", hay):
        return True
    return bool(words) and any(words <= sentence for sentence in _sentences(source))
