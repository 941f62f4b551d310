"""Turn raw file bytes into text, or say why they are not text.

Order matters: a UTF-16 BOM is checked before the NUL-byte test because UTF-16 text is full of
NUL bytes, and latin-1 comes last because it decodes *any* byte string, so it is only trusted
when the result is mostly printable.
"""

from __future__ import annotations

import codecs

BINARY_SNIFF_BYTES = 8 * 1024
# latin-1 decodes anything; below this share of printable characters the file is binary junk.
MIN_PRINTABLE_RATIO = 0.95

NOT_TEXT_REASON = "not valid UTF-8/UTF-16/latin-1 text"
BINARY_REASON = "binary file"


class NotTextError(ValueError):
    """The bytes are not text we can read; the message is the reason to report."""


def decode_text(data: bytes) -> str:
    """Decode file bytes to text with universal newlines; raise NotTextError otherwise."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")  # the codec reads and drops the BOM
        except UnicodeDecodeError:
            raise NotTextError(NOT_TEXT_REASON) from None
        if "\x00" in text:  # e.g. a UTF-32 file, whose BOM starts like UTF-16's
            raise NotTextError(NOT_TEXT_REASON)
        return _normalize_newlines(text)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise NotTextError(BINARY_REASON)
    try:
        return _normalize_newlines(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        pass
    text = data.decode("latin-1")
    if not _mostly_printable(text):
        raise NotTextError(NOT_TEXT_REASON)
    return _normalize_newlines(text)


def _mostly_printable(text: str) -> bool:
    if not text:
        return True
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t\f")
    return printable / len(text) >= MIN_PRINTABLE_RATIO


def _normalize_newlines(text: str) -> str:
    # Chunk spans are offsets into this text, so it must not depend on the platform that wrote it.
    return text.replace("\r\n", "\n").replace("\r", "\n")
