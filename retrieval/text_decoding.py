"""Turn raw file bytes into text, or say why they are not text.

Order matters: a UTF-16 BOM is checked before the NUL-byte test because UTF-16 text is full of
NUL bytes, and latin-1 comes last because it decodes *any* byte string, so it is only trusted
when the result is mostly printable.
"""

from __future__ import annotations

import codecs
import re

BINARY_SNIFF_BYTES = 8 * 1024
# latin-1 decodes anything; below this share of printable characters the file is binary junk.
MIN_PRINTABLE_RATIO = 0.95

NOT_TEXT_REASON = "not valid UTF-8/UTF-16/latin-1 text"
BINARY_REASON = "binary file"

# latin-1 text only holds U+0000..U+00FF, so the unprintable characters are a fixed set that a
# regex finds at C speed (a per-character Python loop takes seconds on a file of megabytes)
_UNPRINTABLE_LATIN1 = re.compile("[" + re.escape("".join(
    chr(i) for i in range(256) if not (chr(i).isprintable() or chr(i) in "\n\r\t\f"))) + "]")


class NotTextError(ValueError):
    """The bytes are not text we can read; the message is the reason to report."""


def decode_text(data: bytes | bytearray, complete: bool = True) -> str:
    """Decode file bytes to text with universal newlines; raise NotTextError otherwise.

    complete=False: `data` is the start of a longer file (cut at a size limit), so a character
    split by the cut is dropped instead of making the whole file look undecodable.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:  # the codec reads and drops the BOM
            text = codecs.getincrementaldecoder("utf-16")().decode(data, final=complete)
        except UnicodeDecodeError:
            raise NotTextError(NOT_TEXT_REASON) from None
        if "\x00" in text:  # e.g. a UTF-32 file, whose BOM starts like UTF-16's
            raise NotTextError(NOT_TEXT_REASON)
        return _normalize_newlines(text)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise NotTextError(BINARY_REASON)
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=complete)
        return _normalize_newlines(text)
    except UnicodeDecodeError:
        pass
    text = codecs.decode(data, "latin-1")
    if not _mostly_printable(text):
        raise NotTextError(NOT_TEXT_REASON)
    return _normalize_newlines(text)


def _mostly_printable(text: str) -> bool:
    """For latin-1-decoded text; stops counting as soon as the junk share is too high."""
    allowed = int(len(text) * (1 - MIN_PRINTABLE_RATIO))
    for seen, _ in enumerate(_UNPRINTABLE_LATIN1.finditer(text), 1):
        if seen > allowed:
            return False
    return True


def _normalize_newlines(text: str) -> str:
    # Chunk spans are offsets into this text, so it must not depend on the platform that wrote it.
    if "\r" not in text:
        return text  # the common case; skips two passes over a large file
    return text.replace("\r\n", "\n").replace("\r", "\n")
