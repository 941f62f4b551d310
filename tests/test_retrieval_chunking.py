from __future__ import annotations

import hashlib

import pytest

from retrieval.chunking import chunk_document
from retrieval.documents import Document


def _long_doc(path: str = "notes/long.md") -> Document:
    paragraphs = []
    for p in range(12):
        sentences = [f"Paragraph {p} sentence {s} talks about topic number {p * 10 + s}." for s in range(5)]
        paragraphs.append(" ".join(sentences))
    return Document(path=path, kind="markdown", text="\n\n" + "\n\n".join(paragraphs) + "\n  ")


def test_spans_reproduce_text_and_chunks_overlap() -> None:
    doc = _long_doc()
    chunks = chunk_document(doc, size=500, overlap=100)

    assert len(chunks) > 5
    for c in chunks:
        assert c.text == doc.text[c.start : c.end]
        assert c.text.strip() == c.text and c.text  # trimmed, never empty
        assert len(c.text) <= 500
        assert c.doc_path == doc.path and c.kind == "markdown"
    for prev, nxt in zip(chunks, chunks[1:]):
        assert prev.start < nxt.start < prev.end  # overlapping, always moving forward
        assert 0 < prev.end - nxt.start <= 100
        assert doc.text[nxt.start - 1].isspace()  # next chunk starts on a word boundary
    # Nothing is lost: every non-space character lies inside some chunk.
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


def test_cuts_prefer_paragraph_breaks() -> None:
    doc = _long_doc()
    chunks = chunk_document(doc, size=500, overlap=100)
    # Cuts are searched in the last quarter of each 500-char window: a blank line there wins,
    # otherwise a sentence end (the text has no other newlines).
    for c in chunks[:-1]:
        window_tail = doc.text[c.start + 375 : c.start + 500]
        if "\n\n" in window_tail:
            assert doc.text[c.end : c.end + 2] == "\n\n"
        else:
            assert doc.text[c.end - 1] == "."  # falls back to a sentence end


def test_short_document_is_one_trimmed_chunk_and_blank_document_none() -> None:
    [chunk] = chunk_document(Document(path="a.txt", kind="text", text="  hello world \n"))
    assert (chunk.start, chunk.end, chunk.text) == (2, 13, "hello world")
    assert chunk_document(Document(path="b.txt", kind="text", text=" \n\t ")) == []


def test_unbreakable_text_is_hard_cut() -> None:
    doc = Document(path="blob.txt", kind="text", text="x" * 2500)
    chunks = chunk_document(doc, size=1000, overlap=0)
    assert [(c.start, c.end) for c in chunks] == [(0, 1000), (1000, 2000), (2000, 2500)]


def test_ids_are_stable_and_follow_content() -> None:
    doc = _long_doc()
    first = chunk_document(doc, size=500, overlap=100)
    again = chunk_document(doc, size=500, overlap=100)
    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first}) == len(first)
    c0 = first[0]
    expected = hashlib.sha256(f"{c0.doc_path}\0{c0.start}\0{c0.end}\0{c0.text}".encode()).hexdigest()[:16]
    assert c0.id == expected

    edited = Document(path=doc.path, kind=doc.kind, text=doc.text.replace("topic number 114", "topic number 999"))
    changed = chunk_document(edited, size=500, overlap=100)
    assert changed[0].id == first[0].id  # untouched start of the document keeps its id
    assert changed[-1].id != first[-1].id
    moved = chunk_document(Document(path="other.md", kind=doc.kind, text=doc.text), size=500, overlap=100)
    assert moved[0].id != first[0].id


@pytest.mark.parametrize(("size", "overlap"), [(100, 100), (100, 150), (100, -1), (0, 0)])
def test_size_and_overlap_are_validated(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="size > overlap >= 0"):
        chunk_document(_long_doc(), size=size, overlap=overlap)
