"""An item's input: the excerpt the flow cuts from the (transformed) seed, and the knobs (target
case, format, language, ...) drawn from the subcategory's params and stated to the student."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from agents.items import Rejected
from agents.text_modification.measure import (SENTENCE_END, banned_words, long_words,
                                              number_words, numbers, proper_nouns)


def sentence_units(passage: str) -> list[str]:
    """Sentences of the passage; a block's leading fragment under three words (a heading) is
    dropped, a later one joins the sentence before it: "Locomotion No. 1." split after "No."
    must not lose its "1." from an excerpt that claims to be the passage's own words."""
    units = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[#*-])", passage):
        block = " ".join(block.split())
        first = len(units)
        for sentence in SENTENCE_END.split(block):
            sentence = sentence.lstrip("#*- ").strip()
            if len(sentence.split()) >= 3:
                units.append(sentence)
            elif sentence and len(units) > first:
                units[-1] = f"{units[-1]} {sentence}"
    return units


def pick_excerpt(passage: str, seed: int, max_chars: int = 500, min_chars: int = 80,
                 prefer: Callable[[str], bool] | None = None) -> str | None:
    """A run of whole sentences of the passage, at most max_chars long, chosen by seed; windows
    satisfying `prefer` (a predicate) win when there are any. None when nothing fits."""
    units = sentence_units(passage)
    windows: list[str] = []
    for i in range(len(units)):
        text = ""
        for unit in units[i:]:
            joined = f"{text} {unit}".strip()
            if len(joined) > max_chars:
                break
            text = joined
        if not text:  # one sentence longer than the limit: cut it at a word boundary
            text = units[i][:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
        if len(text) >= min_chars and text not in windows:
            windows.append(text)
    if not windows:
        return None
    preferred = [w for w in windows if prefer(w)] if prefer else []
    return random.Random(seed).choice(preferred or windows)


def rule_applies(rule: str, text: str, params: dict[str, Any]) -> bool:
    if rule == "numbers_as_digits":
        return bool(number_words(text))
    if rule == "numbers_as_words":
        return bool(numbers(text))
    if rule == "short_words":
        return long_words(text, params.get("max_letters", 7), proper_nouns(text))[0] > 0
    if rule == "banned_words":
        return len(banned_words(text, params.get("banned", 3))) >= params.get("banned", 3)
    return True


PREFER = {  # inputs with something to change for types that need it
    "data_normalization": lambda t: bool(numbers(t) or number_words(t)),
    "obfuscation": lambda t: bool(numbers(t) or proper_nouns(t)),
}
FORMAT_NAMES = {"bullet_list": "a bullet list", "numbered_list": "a numbered list",
                "json": "a JSON object", "table": "a Markdown table"}
RULE_REQUESTS = {"numbers_as_digits": "writing every number as digits",
                 "numbers_as_words": "spelling out every number in words",
                 "short_words": "a rewrite that uses only short words",
                 "banned_words": "a rewrite that avoids some of the text's words"}
def choose_knobs(sub_name: str, params: dict[str, Any], text: str, seed: int) -> dict[str, Any]:
    """The item's knob values, drawn by seed from the subcategory's params."""
    rng = random.Random(seed * 31 + 7)
    knobs: dict[str, Any] = {}
    for plural, single in (("cases", "case"), ("formats", "format"), ("languages", "language"),
                           ("sentiments", "sentiment"), ("markups", "markup")):
        if plural in params:
            knobs[single] = rng.choice(params[plural])
    if "rules" in params:
        usable = [r for r in params["rules"] if rule_applies(r, text, params)]
        if not usable:
            raise Rejected("instruct", f"input text offers nothing for a {sub_name} rule",
                           ", ".join(params["rules"]))
        knobs["rule"] = rng.choice(usable)
        if knobs["rule"] == "short_words":
            knobs["max_letters"] = params.get("max_letters", 7)
        if knobs["rule"] == "banned_words":
            knobs["banned"] = banned_words(text, params.get("banned", 3))
    if "max_shared_run" in params:
        knobs["max_shared_run"] = params["max_shared_run"]
    return knobs


def knob_request(sub_name: str, knobs: dict[str, Any]) -> str:
    """How the instruct prompt names the knob ("upper case", "a translation into French")."""
    if "case" in knobs:
        return f"{knobs['case']} case"
    if "format" in knobs:
        return FORMAT_NAMES[knobs["format"]]
    if "language" in knobs:
        return (f"a translation into {knobs['language']}" if sub_name == "translate"
                else f"mixing in phrases of {knobs['language']}")
    if "sentiment" in knobs:
        return f"a {knobs['sentiment']} tone"
    if "markup" in knobs:
        return f"{knobs['markup']} styling"
    if "rule" in knobs:
        return RULE_REQUESTS[knobs["rule"]]
    return ""


def constraint_line(knobs: dict[str, Any]) -> str:
    """Exact limits the flow states to the student itself (the teacher would garble lists)."""
    if knobs.get("rule") == "banned_words":
        return "Do not use these words: " + ", ".join(f'"{w}"' for w in knobs["banned"]) + "."
    if knobs.get("rule") == "short_words":
        return f"Use only words of at most {knobs['max_letters']} letters (names excepted)."
    return ""
