"""Append-only JSONL outputs that survive kills and full disks: each line goes to disk whole or
not at all, torn tails are repaired on start, and a damaged line is refused, never rewritten."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from engine import failpoints

# a torn tail longer than this is cut without trying to parse it (a record is kilobytes)
MAX_TAIL_PARSE = 16 * 2**20


class CorruptOutput(RuntimeError):
    """An output file has a damaged line that is not a torn tail; it is never overwritten."""


class OutputWriteError(RuntimeError):
    """Appending to an output file failed (disk full, I/O error); the file still holds only
    whole lines, so re-running the same command resumes."""


def repair_tail(path: Path) -> int:
    """Cut a last line that a kill left without its newline; return how many bytes were cut.

    A last line that is a whole record missing only its newline (written by another tool) gets
    the newline instead of being cut: it is data, not debris.
    """
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # walk back to the previous newline in blocks; the torn line is usually short
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            block = f.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = pos - step + cut + 1
                break
            pos -= step
        else:
            keep = 0
        if size - keep <= MAX_TAIL_PARSE:
            f.seek(keep)
            if _is_record(f.read()):
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
                return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def _is_record(raw: bytes) -> bool:
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(row, dict) and "id" in row


def read_jsonl(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with open(path, "rb") as f:  # bytes: a line that is not UTF-8 is named, not a traceback
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorruptOutput(
                    f"{path}:{lineno} is not UTF-8 text (byte {exc.start + 1} of the line); the "
                    "file was not changed — move it aside or fix that line, then re-run") from exc
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise CorruptOutput(
                    f"{path}:{lineno} is not valid JSON ({what}); the file was not changed — "
                    "move it aside or fix that line, then re-run") from exc
            if not isinstance(row, dict) or "id" not in row:
                raise CorruptOutput(f"{path}:{lineno} is not a record with an 'id'; the file was "
                                    "not changed — move it aside or fix that line, then re-run")
            yield row


class JsonlWriter:
    """One line per record, each handed to the kernel whole at once (a kill loses nothing
    written); fsync'd at most once a second and on close (bounded loss on power failure without
    paying a sync per record). A failed append (disk full) is cut back off the file, so it never
    holds half a line, and raises OutputWriteError."""

    def __init__(self, path: Path, sync_every_s: float = 1.0) -> None:
        self.path = path
        # unbuffered: a Python buffer would hold half a line after a failed write and retry it
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._failpoint = f"{path.name}.write"
        self._sync_every = sync_every_s
        self._last_sync = time.monotonic()
        self._failed = False

    def write(self, row: dict) -> None:
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        written = 0
        try:
            if failpoints.reached(self._failpoint):  # the crash harness: die mid-line
                os.write(self._fd, line[: len(line) // 2])
                failpoints.crash(self._failpoint)
            while written < len(line):  # a write may be short (e.g. the disk filled up)
                written += os.write(self._fd, line[written:])
            now = time.monotonic()
            if now - self._last_sync >= self._sync_every:
                os.fsync(self._fd)
                self._last_sync = now
        except OSError as exc:
            self._failed = True
            if 0 < written < len(line):
                self._cut_back(written)
            raise OutputWriteError(
                f"writing {self.path} failed ({exc.strerror or exc}); the records before it are "
                "kept whole — free space (or fix the folder's permissions), then re-run the same "
                "command to resume") from exc

    def _cut_back(self, partial: int) -> None:
        try:  # truncating needs no free space
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - partial)
        except OSError:
            pass  # the torn tail stays; repair_tail cuts it on the next start

    def close(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.fsync(fd)
        except OSError as exc:
            if not self._failed:  # after a failed write the first error is the one to report
                raise OutputWriteError(f"saving {self.path} to disk failed "
                                       f"({exc.strerror or exc}); re-run the same command to "
                                       "resume") from exc
        finally:
            os.close(fd)
