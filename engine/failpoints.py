"""Crash points for the kill-and-resume harness (tests/test_crash_resume.py).

`AGENTINSTRUCT_CRASH_AT=name:n` makes the process SIGKILL itself the n-th time it reaches the
failpoint `name`, so a test can land a kill exactly inside a write or between the two files of an
index save, moments a random kill almost never hits. Unset (always, outside that harness) a
failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, int] = {}
for _spec in filter(None, os.environ.get("AGENTINSTRUCT_CRASH_AT", "").split(",")):
    _name, _, _count = _spec.rpartition(":") if ":" in _spec else (_spec, "", "1")
    _ARMED[_name.strip()] = int(_count)

# data.jsonl.write / rejected.jsonl.write: half the line is on disk (engine/sink.py);
# index.tmp_written: the new index is in its temp file; index.replaced: the new index is in
# place beside the old sidecar (dedup/near.py)
NAMES = ("data.jsonl.write", "rejected.jsonl.write", "index.tmp_written", "index.replaced")


def reached(name: str) -> bool:
    """True when the armed failpoint `name` fires now; the caller does its partial work and
    calls crash(name)."""
    if name not in _ARMED:
        return False
    _ARMED[name] -= 1
    return _ARMED[name] == 0


def crash(name: str) -> None:
    os.write(2, f"failpoint {name} fired\n".encode())  # the harness checks the kill landed here
    os.kill(os.getpid(), signal.SIGKILL)


def hit(name: str) -> None:
    """Die here if `name` is armed and due."""
    if reached(name):
        crash(name)
