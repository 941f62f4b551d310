"""Creative-content validators: plain functions returning a rejection reason, or None.

Every constraint a task can carry has a check here that reads the finished piece; a constraint
that code cannot verify (tone, metre, syllables) is never offered by the skill.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from agents.rag.validators import GENERIC, META_REFERENCE, content_words

WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*")
WRITING_VERBS = frozenset("write compose create draft craft pen produce invent imagine tell"
                          " describe come".split())
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen twenty".split())}
STATED_COUNT = re.compile(r"\b(\d+|" + "|".join(NUMBER_WORDS) + r")[- ](lines?|words?|stanzas?)\b",
                          re.IGNORECASE)
NAME = re.compile(r"[A-Za-z][A-Za-z .'-]{0,19}")
SPEAKER = re.compile(r"^\s*([A-Za-z][A-Za-z .'-]{0,30}?)\s*:\s*(.*)$")
RHYME_SCHEMES = {"couplets", "alternate", "AABBA"}


def words(text: str) -> list[str]:
    return WORD.findall(text)


def _phrase(term: str) -> re.Pattern[str]:
    """A whole-word, case-insensitive match of `term`, its last word optionally plural."""
    parts = [re.escape(w) for w in term.lower().split()]
    return re.compile(r"\b" + r"\s+".join(parts) + r"(?:s|es)?\b", re.IGNORECASE)


def mentions(text: str, term: str) -> bool:
    return bool(term.split()) and bool(_phrase(term).search(text))


# -- the task (cheap, before the piece is paid for) ------------------------------------------

def check_request(instruction: str, form_words: Sequence[str]) -> str | None:
    """The instruction is a self-contained request to write a piece of this form."""
    tokens = [w.lower() for w in words(instruction)]
    if len(tokens) < 5:
        return "instruction too short"
    form = {w.lower() for f in form_words for w in words(f)}
    if not content_words(instruction) - GENERIC - WRITING_VERBS - form:
        return "instruction names no subject"
    if not WRITING_VERBS & set(tokens):
        return "instruction is not a writing request"
    if form_words and not any(mentions(instruction, f) for f in form_words):
        return f"instruction does not ask for a {form_words[0]}"
    if META_REFERENCE.search(instruction):
        return "instruction refers to 'the passage', which the writer never sees"
    return None


def check_on_topic(instruction: str, keywords: Sequence[str], passage: str) -> str | None:
    """A piece inspired by the seed names something from it in the request or its keywords."""
    subject = content_words(" ".join([instruction, *keywords])) - GENERIC
    if not subject & content_words(passage):
        return "task shares no subject word with its source passage"
    return None


def check_stated_counts(instruction: str, counts: dict[str, int | None]) -> str | None:
    """'Write a 10-line poem' under a constraint of 8 lines is a contradiction the student
    cannot satisfy; `counts` maps lines/words/stanzas to the constraint (None: unconstrained)."""
    for match in STATED_COUNT.finditer(instruction):
        raw, unit = match.group(1).lower(), match.group(2).lower().rstrip("s")
        n = int(raw) if raw.isdigit() else NUMBER_WORDS[raw]
        want = counts.get(unit)
        if unit == "word":
            lo, hi = counts.get("min_words"), counts.get("max_words")
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                return f"instruction says {n} words, the constraints say {lo or 0}-{hi or 'any'}"
            continue
        if want is not None and n != want:
            return f"instruction says {n} {unit}s, the constraints say {want}"
    return None


def check_terms(keywords: Sequence[str], forbidden: Sequence[str],
                names: Sequence[str] = ()) -> str | None:
    """Required keywords are short phrases, forbidden entries single words, and no word is both
    required and forbidden (nor a speaker's name, which every line of a script carries)."""
    seen: set[str] = set()
    for k in keywords:
        n = len(words(k))
        if n == 0 or n > 3:
            return f"keyword '{k}' is not one to three words"
        key = " ".join(words(k.lower()))
        if key in seen:
            return f"keyword '{k}' listed twice"
        seen.add(key)
    banned: set[str] = set()
    for f in forbidden:
        if len(words(f)) != 1 or len(f.split()) != 1:
            return f"forbidden entry '{f}' is not a single word"
        if f.lower() in banned:
            return f"forbidden word '{f}' listed twice"
        banned.add(f.lower())
        for k in keywords:
            if mentions(k, f) or mentions(f, k):
                return f"'{f}' is both required (in '{k}') and forbidden"
        for name in names:
            if mentions(name, f):
                return f"forbidden word '{f}' is a speaker's name"
    return None


def check_form_fits(lines: int | None, stanzas: int | None, rhyme: str | None,
                    min_words: int | None, max_words: int | None,
                    keywords: Sequence[str]) -> str | None:
    """The constraints can be met together."""
    if stanzas is not None and lines is not None and stanzas > 1 and lines < 2 * stanzas:
        return f"{stanzas} stanzas cannot be filled by {lines} lines (two or more each)"
    if rhyme == "couplets" and lines is not None and lines % 2:
        return f"rhyming couplets need an even number of lines, not {lines}"
    if rhyme == "alternate" and lines is not None and lines % 4:
        return f"alternate rhyme (ABAB) needs a multiple of four lines, not {lines}"
    if rhyme == "AABBA" and lines != 5:
        return "rhyme scheme AABBA needs exactly five lines"
    if min_words is not None and max_words is not None and min_words >= max_words:
        return f"word range {min_words}-{max_words} is empty"
    needed = sum(len(words(k)) for k in keywords)
    if max_words is not None and needed > max_words:
        return f"the keywords need {needed} words, more than the limit of {max_words}"
    return None


def check_acrostic_word(word: str) -> str | None:
    if not word.isalpha() or not 3 <= len(word) <= 8:
        return f"acrostic word '{word}' is not one word of 3 to 8 letters"
    return None


def check_speaker_names(speakers: Sequence[str]) -> str | None:
    for s in speakers:
        if not NAME.fullmatch(s) or len(s.split()) > 2 or s.strip() != s:
            return f"speaker '{s}' is not a name"
    if len({s.lower() for s in speakers}) < len(speakers):
        return "two speakers have the same name"
    return None


def check_adds_constraints(before: Sequence[str], after: Sequence[str]) -> str | None:
    """A refinement edit keeps every constraint and adds at least one."""
    dropped = [c for c in before if c not in after]
    if dropped:
        return f"edit drops the constraint: {dropped[0]}"
    if len(set(after)) <= len(set(before)):
        return "edit adds no constraint"
    return None


# -- the piece ---------------------------------------------------------------------------------

def check_line_count(lines: Sequence[str], n: int) -> str | None:
    if len(lines) != n:
        return f"has {len(lines)} lines, the task asks for {n}"
    return None


def check_no_empty_lines(lines: Sequence[str]) -> str | None:
    for i, line in enumerate(lines, 1):
        if not words(line):
            return f"line {i} is empty"
    return None


def check_stanza_count(stanzas: Sequence[Sequence[str]], n: int) -> str | None:
    filled = [s for s in stanzas if any(words(line) for line in s)]
    if len(filled) != n:
        return f"has {len(filled)} stanzas, the task asks for {n}"
    return None


def check_line_length(lines: Sequence[str], max_words: int) -> str | None:
    for i, line in enumerate(lines, 1):
        if len(words(line)) > max_words:
            return f"line {i} has {len(words(line))} words, too long for this form (max {max_words})"
    return None


def check_word_count(text: str, min_words: int | None, max_words: int | None) -> str | None:
    n = len(words(text))
    if min_words is not None and n < min_words:
        return f"has {n} words, the task asks for at least {min_words}"
    if max_words is not None and n > max_words:
        return f"has {n} words, the task allows at most {max_words}"
    return None


def check_keywords(text: str, keywords: Sequence[str]) -> str | None:
    for k in keywords:
        if not mentions(text, k):
            return f"missing required keyword '{k}'"
    return None


def check_forbidden(text: str, forbidden: Sequence[str]) -> str | None:
    for f in forbidden:
        if mentions(text, f):
            return f"uses forbidden word '{f}'"
    return None


def last_word(line: str) -> str:
    found = re.findall(r"[a-z]+", line.lower())
    return found[-1] if found else ""


def rhyme_groups(scheme: str, n: int) -> list[list[int]]:
    """Line indexes (0-based) that must rhyme with each other."""
    if scheme == "couplets":
        return [[i, i + 1] for i in range(0, n - 1, 2)]
    if scheme == "alternate":
        return [g for q in range(0, n - 3, 4) for g in ([q, q + 2], [q + 1, q + 3])]
    if scheme == "AABBA":
        return [[0, 1, 4], [2, 3]] if n == 5 else []
    return []


def rhymes(a: str, b: str) -> bool:
    """Crude but real: two different words sharing their last two letters."""
    return a != b and len(a) >= 2 and len(b) >= 2 and a[-2:] == b[-2:]


def check_rhyme(lines: Sequence[str], scheme: str) -> str | None:
    if scheme not in RHYME_SCHEMES:
        return None
    groups = rhyme_groups(scheme, len(lines))
    if not groups:
        return f"{len(lines)} lines cannot follow the rhyme scheme {scheme}"
    for group in groups:
        for i, j in zip(group, group[1:]):
            a, b = last_word(lines[i]), last_word(lines[j])
            if a and a == b:
                return f"lines {i + 1} and {j + 1} rhyme a word with itself ('{a}')"
            if not rhymes(a, b):
                return f"lines {i + 1} and {j + 1} do not rhyme ('{a}' / '{b}')"
    return None


def check_acrostic(lines: Sequence[str], word: str) -> str | None:
    if len(lines) != len(word):
        return f"has {len(lines)} lines, the acrostic '{word.upper()}' needs {len(word)}"
    for i, (line, letter) in enumerate(zip(lines, word.upper()), 1):
        first = next((c for c in line if c.isalpha()), "")
        if first.upper() != letter:
            return f"line {i} starts with '{first}', the acrostic needs '{letter}'"
    return None


def check_speakers(lines: Sequence[str], speakers: Sequence[str]) -> str | None:
    """Every line of a script is 'NAME: words' with a named speaker, and everyone speaks."""
    names = {s.lower(): s for s in speakers}
    spoke: set[str] = set()
    for i, line in enumerate(lines, 1):
        m = SPEAKER.match(line)
        if not m:
            return f"line {i} has no speaker label"
        who = m.group(1).strip().lower()
        if who not in names:
            return f"line {i} is spoken by '{m.group(1).strip()}', who is not in the cast"
        if not words(m.group(2)):
            return f"line {i} has a speaker label but no words"
        spoke.add(who)
    silent = [names[s] for s in names if s not in spoke]
    if silent:
        return f"speaker '{silent[0]}' never speaks"
    return None


def check_single_line(text: str) -> str | None:
    if len([line for line in text.splitlines() if line.strip()]) > 1:
        return "spans several lines, the form is a single line"
    return None


def check_title(title: str, lines: Sequence[str]) -> str | None:
    n = len(words(title))
    if n == 0:
        return "title is empty"
    if n > 10:
        return f"title has {n} words, too long for a title"
    if lines and " ".join(words(title.lower())) == " ".join(words(lines[0].lower())):
        return "title repeats the first line"
    return None


def check_not_copied(text: str, sources: Sequence[str], span: int = 8) -> str | None:
    """A piece 'inspired by' a passage does not lift long runs of it (the tiny teacher copies)."""
    tokens = [w.lower() for w in words(text)]
    grams = {tuple(tokens[i:i + span]) for i in range(len(tokens) - span + 1)}
    for source in sources:
        src = [w.lower() for w in words(source)]
        if any(tuple(src[i:i + span]) in grams for i in range(len(src) - span + 1)):
            return f"copies {span} or more words in a row from the source or the instruction"
    return None


def check_repeated_lines(lines: Sequence[str], max_repeats: int = 2) -> str | None:
    """A refrain may come back once; a line printed over and over is degenerate."""
    counts = Counter(" ".join(words(line.lower())) for line in lines if words(line))
    if counts:
        line, n = counts.most_common(1)[0]
        if n > max_repeats:
            return f"repeats the line '{line}' {n} times"
    return None
