"""String fields a teacher writes on one line (a question, an instruction, an option), and the
JSON schema that keeps constrained decoding from cutting them at a bare double quote.

A small teacher quotes a term with a bare `"` ('What is the purpose of the "equivs-build"
command?'). JSON reads it as the string's end, so the grammar closes the field there and the
record gets 'What is the purpose of the '. Every such cut leaves the string ending in a space,
and a string a teacher means to end never does; so the schema says a line may not end in a
space, which rules that quote out wherever it falls, and the teacher writes the term unquoted,
in single quotes or backticks, or escaped (measured in bench/RESULTS.md, session 19).

The rule is a `pattern`, and llama.cpp turns a pattern into the field's whole grammar (its
lengths with it), so the pattern carries the lengths and admits only what JSON allows unescaped
in a string, plus an escaped quote or backslash: a pattern that admits a bare quote (`.`) makes
llama-server answer HTTP 500 when the reply does not parse. The pattern is only in the schema;
the parser holds the lengths, so a backend that ignores schemas is not held to it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

# one character of a JSON string: anything but a quote, a backslash or a control character, or
# an escaped quote or backslash (no \n: a line)
_CHAR = r'([^"\\\x7F\x00-\x1F]|\\["\\])'
_LAST = r'([^"\\\x7F\x00-\x1F ]|\\["\\])'  # the same, but not a space

# A question's schema asks for more characters than the parser needs: below this floor no quote
# can end it, even one after a letter. A short question still ends short: the server stops at
# its "?" (Question.reply_stop).
QUESTION_FLOOR = 48


def line_pattern(min_length: int, max_length: int) -> str:
    """The JSON-schema pattern of a line of min_length..max_length characters that does not end
    in a space (lengths count an escaped quote as one character, as the parsed string does)."""
    return f"^{_CHAR}{{{max(0, min_length - 1)},{max_length - 1}}}{_LAST}$"


def line_field(min_length: int, max_length: int, *, floor: int | None = None) -> Any:
    """A pydantic field for a line the teacher writes: the parser checks min_length and
    max_length; the schema asks the decoder for a line of floor (default: min_length) to
    max_length characters that does not end in a space."""
    lo = max(min_length, floor or 0)
    return Field(min_length=min_length, max_length=max_length,
                 json_schema_extra={"minLength": lo, "pattern": line_pattern(lo, max_length)})


def question_field() -> Any:
    return line_field(12, 300, floor=QUESTION_FLOOR)
