"""Load an input file or folder into plain-text Documents, reporting every file we skip.

Users point this at whatever folder they have (docs dumps, repos, scraped sites), so nothing in
it may crash the run: unreadable, binary, oddly encoded or unsupported files become SkippedFile
entries with a reason the user can act on.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict

from retrieval.html_text import html_to_text
from retrieval.text_decoding import NotTextError, decode_text

DocumentKind = Literal["html", "markdown", "text", "code", "jsonl"]

KIND_BY_EXTENSION: dict[str, DocumentKind] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".jsonl": "jsonl",
    **{
        ext: "code"
        for ext in (
            ".py", ".js", ".ts", ".java", ".c", ".h", ".cpp", ".hpp", ".go", ".rs", ".rb",
            ".sh", ".sql", ".toml", ".yaml", ".yml", ".json",
        )
    },
}
JSONL_TEXT_FIELDS = ("text", "content")
# Per file. Every document and its chunks stay in memory for the run, so one giant dump must not
# take it all; 16 MiB is ~3 million words, far more seed text than a run uses.
MAX_FILE_BYTES = 16 * 2**20
READ_BLOCK = 2**20


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # posix, relative to the input root; "file.jsonl#L7" for one jsonl record
    kind: DocumentKind
    text: str


class SkippedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    reason: str


def load_documents(
    root: Path, max_file_bytes: int = MAX_FILE_BYTES
) -> tuple[list[Document], list[SkippedFile]]:
    """Read every supported file under `root` (a file or a folder), in a deterministic order.

    Each file contributes at most `max_file_bytes` (read in one bounded gulp, never the whole
    file): a 100 MB dump must not take the run's memory; the cut is reported as a SkippedFile.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(
            f"input path {root} does not exist: pass an existing file or folder of documents"
        )
    docs: list[Document] = []
    skipped: list[SkippedFile] = []
    if not root.is_dir():  # a file, or a pipe/device given by mistake (reported, not read)
        _load_file(root, root.name, docs, skipped, max_file_bytes)
        return docs, skipped

    real_root = Path(os.path.realpath(root))
    for rel in _walk_files(root, real_root, skipped):
        _load_file(root / rel, rel.as_posix(), docs, skipped, max_file_bytes)
    return docs, skipped


def _walk_files(root: Path, real_root: Path, skipped: list[SkippedFile]) -> list[PurePosixPath]:
    """Relative paths of candidate files, sorted; symlinks leaving the root are reported."""
    found: list[PurePosixPath] = []

    def unlistable(exc: OSError) -> None:  # os.walk would drop an unreadable folder silently
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        skipped.append(SkippedFile(path=rel, reason=f"cannot list folder: {_os_reason(exc)}"))

    # followlinks=False: a symlinked folder could loop back on itself or leave the root.
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable, followlinks=False):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in list(dirnames):
            full = Path(dirpath) / name
            if full.is_symlink():
                dirnames.remove(name)  # os.walk would not descend anyway; just report it
                rel = (rel_dir / name).as_posix()
                if _inside(full, real_root):
                    reason = "symlinked folder not followed (its target is inside the input root)"
                else:
                    reason = "symlink outside input root"
                skipped.append(SkippedFile(path=rel, reason=reason))
        for name in filenames:
            if name.startswith("."):  # .DS_Store, .gitignore: tool droppings, not documents
                continue
            full = Path(dirpath) / name
            rel = rel_dir / name
            if full.is_symlink() and not _inside(full, real_root):
                skipped.append(SkippedFile(path=rel.as_posix(), reason="symlink outside input root"))
                continue
            found.append(rel)
    skipped.sort(key=lambda s: PurePosixPath(s.path).parts)
    return sorted(found, key=lambda p: p.parts)


def _inside(path: Path, real_root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(real_root)


class _Unreadable(Exception):
    """The file cannot be read as a document; the message is the reason to report."""


def _load_file(path: Path, rel: str, docs: list[Document], skipped: list[SkippedFile],
               max_file_bytes: int = MAX_FILE_BYTES) -> None:
    suffix = path.suffix.lower()
    kind = KIND_BY_EXTENSION.get(suffix)
    if kind is None:
        reason = f"unsupported extension {suffix}" if suffix else "no file extension"
        skipped.append(SkippedFile(path=rel, reason=reason))
        return
    try:
        data, size = _read_start(path, max_file_bytes)
    except _Unreadable as exc:
        skipped.append(SkippedFile(path=rel, reason=str(exc)))
        return
    if not data:
        skipped.append(SkippedFile(path=rel, reason="empty file"))
        return
    cut = size > len(data)
    try:
        text = decode_text(data, complete=not cut)
    except NotTextError as exc:
        skipped.append(SkippedFile(path=rel, reason=str(exc)))
        return
    del data  # the bytes and the text of a large file need not be held together
    if cut:
        # end on a whole line: no half record in a jsonl file, no half sentence in a text
        text = text[: text.rfind("\n") + 1] or text
        skipped.append(SkippedFile(path=rel, reason=(
            f"truncated: only the first {_mib(max_file_bytes)} of {_mib(size)} are used; split "
            "the file to use the rest")))

    if kind == "jsonl":
        _load_jsonl(text, rel, docs, skipped)
        return
    if kind == "html":
        text = html_to_text(text)
    if not text.strip():
        skipped.append(SkippedFile(path=rel, reason="empty after extraction"))
        return
    docs.append(Document(path=rel, kind=kind, text=text))


def _read_start(path: Path, limit: int) -> tuple[bytearray, int]:
    """At most `limit` bytes from the start of a regular file, and the file's size.

    Opened non-blocking and checked with fstat, so a FIFO or device that is named like a document
    is reported instead of hanging the run (or streaming forever, like /dev/zero).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _Unreadable(_os_reason(exc)) from None
    with open(fd, "rb", buffering=0) as f:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Unreadable(f"not a regular file ({_file_type(st.st_mode)})")
            # one byte past the limit tells a file that is over it from one that fills it
            # exactly; read into a buffer of the final size (growing one would briefly need two)
            want = min(st.st_size, limit) + 1
            data = bytearray(want)
            with memoryview(data) as view:
                got = 0
                while got < want and (n := f.readinto(view[got:])):
                    got += n
            del data[got:]
            while len(data) == want <= limit:  # it grew since fstat (a log being written)
                block = f.read(min(READ_BLOCK, limit + 1 - len(data)))
                if not block:
                    break
                data += block
                want = len(data)
        except OSError as exc:
            raise _Unreadable(_os_reason(exc)) from None
    size = max(st.st_size, len(data))  # a file that grew while we read is over the limit too
    del data[limit:]
    return data, size


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:  # a dangling symlink, or deleted after the folder was listed
        return "broken symlink or file vanished while reading"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENXIO:  # open() on a socket file
        return "not a regular file (a socket or device)"
    return f"could not read: {exc.strerror or exc}"


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def _load_jsonl(text: str, rel: str, docs: list[Document], skipped: list[SkippedFile]) -> None:
    """One Document per usable record; all unusable lines of a file become one SkippedFile."""
    bad_lines: list[int] = []
    for lineno, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        record_text = _jsonl_record_text(line)
        if record_text is None:
            bad_lines.append(lineno)
        else:
            docs.append(Document(path=f"{rel}#L{lineno}", kind="jsonl", text=record_text))
    if bad_lines:
        shown = ", ".join(str(n) for n in bad_lines[:5]) + (", ..." if len(bad_lines) > 5 else "")
        skipped.append(
            SkippedFile(
                path=rel,
                reason=(
                    f"{len(bad_lines)} jsonl line(s) skipped (invalid JSON, not an object, "
                    f"or no non-empty string 'text'/'content' field): line(s) {shown}"
                ),
            )
        )


def _lines(text: str) -> Iterator[str]:
    """text.split("\n") one line at a time (a list of every line would copy a large file)."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


def _jsonl_record_text(line: str) -> str | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[..." a mile deep
        return None
    if not isinstance(record, dict):
        return None
    for field in JSONL_TEXT_FIELDS:
        value = record.get(field)
        if isinstance(value, str) and value.strip():
            return value
    return None
