"""Split Documents into overlapping, boundary-aware chunks that map back to exact spans.

Every chunk's text is `doc.text[start:end]`, so citations and grounding checks can point at the
original document; whitespace is trimmed by moving start/end, never by editing the text.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

from retrieval.documents import Document

# Cuts are searched for only in the tail of the window, so chunks stay close to `size`.
CUT_SEARCH_TAIL = 0.25
SENTENCE_ENDS = (". ", "? ", "! ", ".\n", "?\n", "!\n")


class Chunk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    doc_path: str
    kind: str
    start: int
    end: int
    text: str


def chunk_id(doc_path: str, start: int, end: int, text: str) -> str:
    """Stable across runs and machines; changes whenever the chunk's place or content does."""
    digest = hashlib.sha256(f"{doc_path}\0{start}\0{end}\0{text}".encode("utf-8"))
    return digest.hexdigest()[:16]


def chunk_document(doc: Document, size: int = 1200, overlap: int = 200) -> list[Chunk]:
    if not (size > overlap >= 0):
        raise ValueError(
            f"chunking {doc.path}: need chunk size > overlap >= 0, got size={size}, "
            f"overlap={overlap}; pick a smaller overlap or a larger chunk size"
        )
    text = doc.text
    text_end = len(text.rstrip())
    start = _skip_whitespace(text, 0)
    chunks: list[Chunk] = []
    while start < text_end:
        if text_end - start <= size:
            end = text_end
        else:
            end = _trim_right(text, start, _find_cut(text, start, start + size))
        piece = text[start:end]
        chunks.append(
            Chunk(
                id=chunk_id(doc.path, start, end, piece),
                doc_path=doc.path,
                kind=doc.kind,
                start=start,
                end=end,
                text=piece,
            )
        )
        if end >= text_end:
            break
        start = _next_start(text, start, end, overlap)
    return chunks


def _find_cut(text: str, start: int, limit: int) -> int:
    """Best cut position in (start, limit]: blank line > newline > sentence end > space."""
    lo = max(start + 1, limit - int((limit - start) * CUT_SEARCH_TAIL))
    window = text[lo:limit]
    blank = window.rfind("\n\n")
    if blank >= 0:
        return lo + blank
    newline = window.rfind("\n")
    if newline >= 0:
        return lo + newline
    sentence = max(window.rfind(mark) for mark in SENTENCE_ENDS)
    if sentence >= 0:
        return lo + sentence + 1  # keep the punctuation in this chunk
    space = max(window.rfind(" "), window.rfind("\t"))
    if space >= 0:
        return lo + space
    return limit  # one huge token (minified code, base64): hard cut


def _trim_right(text: str, start: int, end: int) -> int:
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return end


def _skip_whitespace(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    """Back off `overlap` chars from `end`, then move forward to the next word start."""
    pos = end - overlap
    if pos <= start:
        pos = end
    # Mid-word: move to the end of the word so the next chunk does not open on a fragment.
    while 0 < pos < end and not text[pos - 1].isspace() and not text[pos].isspace():
        pos += 1
    return _skip_whitespace(text, pos)
