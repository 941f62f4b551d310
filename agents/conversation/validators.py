"""Conversation validators: plain functions returning a rejection reason, or None."""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

from agents.rag.validators import (GENERIC, IMPERATIVE, check_adds_information, check_repetition,
                                   content_words, lexical_support)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _same_word(a: str, b: str) -> bool:
    """One word, allowing spelling variants and inflections (vapour/vapor, erupt/erupts)."""
    return a == b or (min(len(a), len(b)) >= 4
                      and SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.8)


def subject_overlap(a: str, b: str) -> float:
    """Jaccard of the two texts' content words, counting spelling variants as one word."""
    wa, wb = sorted(content_words(a)), sorted(content_words(b))
    unmatched, shared = list(wb), 0
    for w in wa:
        hit = next((u for u in unmatched if _same_word(w, u)), None)
        if hit is not None:
            unmatched.remove(hit)
            shared += 1
    union = len(wa) + len(wb) - shared
    return shared / union if union else 0.0


def near_copy(a: str, b: str, wording: float = 0.9, subject: float = 0.8) -> bool:
    """Nearly the same wording (word-sequence ratio) or the same subject words (Jaccard of
    content words, spelling variants counted as one): 'Why does Etna erupt?' and 'How does Etna
    erupt?' are one question, and so are 'water vapour' and 'water vapor'; asking about the
    distance and then about the direction are two."""
    if SequenceMatcher(None, tokens(a), tokens(b), autojunk=False).ratio() >= wording:
        return True
    return min(len(content_words(a)), len(content_words(b))) >= 2 \
        and subject_overlap(a, b) >= subject


def copied_run(text: str, source: str) -> int:
    """Length (in words) of the longest run of `text` found verbatim in `source`."""
    a, b = tokens(text), tokens(source)
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.size


def check_user_message(text: str, label: str) -> str | None:
    if len(tokens(text)) < 3:
        return f"{label} is too short"
    if not content_words(text) - GENERIC:
        return f"{label} has no content words"
    if problem := check_repetition(text):
        return f"{label}: {problem}"
    return None


def check_opening(question: str, passage: str) -> str | None:
    """The first user turn: a real question about something the shared text names."""
    if problem := check_user_message(question, "opening question"):
        return problem
    if not question.rstrip().endswith("?") and not IMPERATIVE.match(question):
        return "opening question is not a question or request"
    if not (content_words(question) - GENERIC) & content_words(passage):
        return "opening question shares no subject word with the text"
    return None


def check_follow_up(text: str, n: int, users: Sequence[str], answers: Sequence[str]) -> str | None:
    """Follow-up `n` (the n-th user turn) refers back to the conversation so far, yet says
    something new: it is neither a near copy of an earlier user turn nor a lifted answer."""
    label = f"follow-up {n}"
    if problem := check_user_message(text, label):
        return problem
    earlier = set().union(*(content_words(t) for t in [*users, *answers]))
    if not (content_words(text) - GENERIC) & earlier:
        return f"{label} does not refer to the conversation"
    for m, user in enumerate(users, 1):
        if near_copy(text, user):
            return f"{label} nearly repeats user turn {m}"
    size = len(tokens(text))
    for m, answer in enumerate(answers, 1):
        run = copied_run(text, answer)
        if run >= 6 and run >= 0.8 * size:
            return f"{label} copies answer {m}"
    return None


def check_answer(answer: str, n: int, question: str, grounds: Sequence[str],
                 earlier: Sequence[str], min_support: float = 0.5) -> tuple[str | None, float]:
    """Answer `n`: not degenerate, adds to its question, grounded in the text and the user's own
    words (`grounds`), and not a repeat of an earlier answer. Returns (reason, support)."""
    support = lexical_support(answer, list(grounds))
    label = f"answer {n}"
    if problem := check_repetition(answer):
        return f"{label}: {problem}", support
    if check_adds_information(question, answer):
        return f"{label} only restates the question", support
    if support < min_support:
        return f"{label} not grounded in the text", support
    for m, before in enumerate(earlier, 1):
        if near_copy(answer, before):
            return f"{label} repeats answer {m}", support
    return None, support


def check_turns(roles: Sequence[str], min_user_turns: int) -> str | None:
    """The record's messages: an optional system message, then user and assistant in turn,
    ending with the assistant, with at least `min_user_turns` user turns."""
    body = list(roles[1:] if roles and roles[0] == "system" else roles)
    expected = ["user", "assistant"] * (len(body) // 2)
    if not body or body != expected or len(body) % 2:
        return "messages do not alternate user and assistant"
    users = body.count("user")
    if users < min_user_turns:
        return f"conversation has {users} user turns, needs at least {min_user_turns}"
    return None
