"""Anchor terms: the distinctive word of a seed passage that a question is asked about.

A small teacher left to choose its own subject writes questions about nothing in particular
("What is the source of the answer?") or echoes the prompt's rules back, and the cheap checks
then reject them after their tokens are paid for. Handing it one distinctive term of the passage
(a name, a command, a path; else a word rare in the corpus, so the question also finds its own
chunk again) and making its reply open by naming that term keeps the question on a subject the
passage holds. Items of the same chunk draw different anchors, so they also ask different things.
Measured on the 135M teacher (80 instruct calls each): 10 → 15–18 questions past the cheap checks
and the round trip (bench/RESULTS.md).
"""

from __future__ import annotations

import math
import random
import re
import weakref
from collections import Counter

from agents.rag.validators import GENERIC, STOPWORDS
from retrieval import CorpusIndex

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[.'_/-][A-Za-z0-9]+)*")
# function words the validators' stopword list leaves in: never the subject of a question
_FILLER = frozenset("about above across after again against along among another around because"
                    " before behind below between beyond cannot during either every further"
                    " however instead later little many much neither never often rather since"
                    " still though through together toward towards under until upon very while"
                    " whether within without would yet also just even well next last first"
                    " same such them then there these those thus anything everything nothing"
                    " something".split())
_WEB = (".com", ".org", ".net", ".uk", ".info", ".html", ".htm")
_DOCUMENT_FREQUENCY: weakref.WeakKeyDictionary[CorpusIndex, Counter[str]] = \
    weakref.WeakKeyDictionary()


def _terms(text: str) -> set[str]:
    return {token.lower() for token in _TOKEN.findall(text)}


def document_frequency(index: CorpusIndex) -> Counter[str]:
    """In how many chunks of the corpus each term occurs (counted once per index)."""
    found = _DOCUMENT_FREQUENCY.get(index)
    if found is None:
        found = Counter(w for chunk in index.chunks for w in _terms(chunk.text))
        _DOCUMENT_FREQUENCY[index] = found
    return found


def key_terms(text: str, index: CorpusIndex, within: str | None = None, k: int = 6) -> list[str]:
    """The k most distinctive terms of `text` that also occur in `within` (the seed chunk, which
    the question must retrieve): names and technical tokens first, when there are at least two;
    ranked by tf-idf with a damped term count, so one repeated word does not crowd out the rest."""
    keep = _terms(within) if within is not None else None
    tokens = _TOKEN.findall(text)
    counts: Counter[str] = Counter()
    named: set[str] = set()
    for position, token in enumerate(tokens):
        word = token.lower()
        if (len(word) <= 3 or word in STOPWORDS or word in GENERIC or word in _FILLER
                or word.endswith("ly")
                or 5 * sum(c.isdigit() for c in word) > 2 * len(word)  # numbers, ids, hashes
                or "www." in word or word.endswith(_WEB)
                or (keep is not None and word not in keep)):
            continue
        counts[word] += 1
        # capitalized mid-text, or shaped like a command, path or version: a name of something
        if (position and token[0].isupper()) or any(c in word for c in "-._/0123456789"):
            named.add(word)
    df, n = document_frequency(index), max(len(index), 1)

    def score(word: str) -> float:
        shape = 2.0 if word in named else 0.5 if word.endswith(("ing", "ed")) else 1.0
        return math.sqrt(counts[word]) * math.log(1 + n / df.get(word, 1)) * shape

    ranked = sorted(counts, key=lambda w: (-score(w), w))
    names = [w for w in ranked if w in named]
    return (names if len(names) >= 2 else ranked)[:k]


def pick_anchor(text: str, index: CorpusIndex, seed: int, within: str | None = None) -> str | None:
    """One of the passage's key terms, drawn with the item's seed (None: the passage has none)."""
    terms = key_terms(text, index, within)
    return random.Random(seed).choice(terms) if terms else None
