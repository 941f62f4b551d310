"""Append-only JSONL outputs that survive kills: flushed per line, torn tails repaired on start."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


class CorruptOutput(RuntimeError):
    """An output file has a damaged line that is not a torn tail; it is never overwritten."""


def repair_tail(path: Path) -> int:
    """Cut a last line that a kill left without its newline; return how many bytes were cut."""
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
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def read_jsonl(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorruptOutput(
                    f"{path}:{lineno} is not valid JSON ({exc.msg}); the file was not changed — "
                    "move it aside or fix that line, then re-run") from exc
            if not isinstance(row, dict) or "id" not in row:
                raise CorruptOutput(f"{path}:{lineno} is not a record with an 'id'; the file was "
                                    "not changed — move it aside or fix that line, then re-run")
            yield row


class JsonlWriter:
    """One line per record, flushed at once (a kill loses nothing written); fsync'd at most once a
    second and on close (bounded loss on power failure without paying a sync per record)."""

    def __init__(self, path: Path, sync_every_s: float = 1.0) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8")
        self._sync_every = sync_every_s
        self._last_sync = time.monotonic()

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        now = time.monotonic()
        if now - self._last_sync >= self._sync_every:
            os.fsync(self._f.fileno())
            self._last_sync = now

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
