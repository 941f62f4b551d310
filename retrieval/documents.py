"""Load an input file or folder into plain-text Documents, reporting every file we skip.

Users point this at whatever folder they have (docs dumps, repos, scraped sites), so nothing in
it may crash the run: unreadable, binary, oddly encoded or unsupported files become SkippedFile
entries with a reason the user can act on.
"""

from __future__ import annotations

import json
import os
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


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # posix, relative to the input root; "file.jsonl#L7" for one jsonl record
    kind: DocumentKind
    text: str


class SkippedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    reason: str


def load_documents(root: Path) -> tuple[list[Document], list[SkippedFile]]:
    """Read every supported file under `root` (a file or a folder), in a deterministic order."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(
            f"input path {root} does not exist: pass an existing file or folder of documents"
        )
    docs: list[Document] = []
    skipped: list[SkippedFile] = []
    if root.is_file():
        _load_file(root, root.name, docs, skipped)
        return docs, skipped

    real_root = Path(os.path.realpath(root))
    for rel in _walk_files(root, real_root, skipped):
        _load_file(root / rel, rel.as_posix(), docs, skipped)
    return docs, skipped


def _walk_files(root: Path, real_root: Path, skipped: list[SkippedFile]) -> list[PurePosixPath]:
    """Relative paths of candidate files, sorted; symlinks leaving the root are reported."""
    found: list[PurePosixPath] = []
    # followlinks=False: a symlinked folder could loop back on itself or leave the root.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
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


def _load_file(path: Path, rel: str, docs: list[Document], skipped: list[SkippedFile]) -> None:
    suffix = path.suffix.lower()
    kind = KIND_BY_EXTENSION.get(suffix)
    if kind is None:
        reason = f"unsupported extension {suffix}" if suffix else "no file extension"
        skipped.append(SkippedFile(path=rel, reason=reason))
        return
    try:
        data = path.read_bytes()
    except PermissionError:
        skipped.append(SkippedFile(path=rel, reason="permission denied"))
        return
    except FileNotFoundError:  # a dangling symlink inside the root
        skipped.append(SkippedFile(path=rel, reason="broken symlink or file vanished while reading"))
        return
    except OSError as exc:
        skipped.append(SkippedFile(path=rel, reason=f"could not read: {exc.strerror or exc}"))
        return
    if not data:
        skipped.append(SkippedFile(path=rel, reason="empty file"))
        return
    try:
        text = decode_text(data)
    except NotTextError as exc:
        skipped.append(SkippedFile(path=rel, reason=str(exc)))
        return

    if kind == "jsonl":
        _load_jsonl(text, rel, docs, skipped)
        return
    if kind == "html":
        text = html_to_text(text)
    if not text.strip():
        skipped.append(SkippedFile(path=rel, reason="empty after extraction"))
        return
    docs.append(Document(path=rel, kind=kind, text=text))


def _load_jsonl(text: str, rel: str, docs: list[Document], skipped: list[SkippedFile]) -> None:
    """One Document per usable record; all unusable lines of a file become one SkippedFile."""
    bad_lines: list[int] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
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


def _jsonl_record_text(line: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    for field in JSONL_TEXT_FIELDS:
        value = record.get(field)
        if isinstance(value, str) and value.strip():
            return value
    return None
