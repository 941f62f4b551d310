"""A GGUF converted to Q8_0 once, for llama.cpp's CPU kernels.

The embedded teacher (SmolLM2-135M) ships as Q4_1, a type llama.cpp 0.3.36 computes on x86 CPUs
row by row: its weights cannot be repacked for the batched (GEMM) kernels that Q4_0 and Q8_0
get, so prompts evaluate at ~270 tok/s on 2 cores. The same weights in Q8_0 evaluate prompts
1.5-1.9x faster, and Q8_0 holds every Q4_1 value almost exactly (perplexity on corpus text
35.76 as Q4_1, 35.74 as Q8_0; Q4_0 would cost 19%): bench/RESULTS.md. The price is a larger file
(92 -> 136 MiB) and a slower single-sequence decode; with the engine's slots busy, batched
decode uses the same fast kernels.

The conversion (llama.cpp's own quantizer, through llama-cpp-python) runs once, in a child
process (its log is loud, and a crash in it must not take the run down), into the user cache,
keyed by the source file; a failed conversion leaves the source in use and says why. Each copy
records its source beside it, and copies whose source is gone or rewritten (a removed virtualenv,
a reinstalled package) are deleted when the next one is made: the cache holds one copy per
installed source, not one per install ever made (136 MiB each).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from models.server_build import cache_root, file_key


def converted_path(source: Path) -> Path:
    """Where `source`'s Q8_0 copy lives: one per source file (path, size, mtime)."""
    key = hashlib.sha256(file_key(source).encode())
    return cache_root() / "gguf" / f"{source.stem}.{key.hexdigest()[:12]}.q8_0.gguf"


def q8_0(source: Path, say: Callable[[str], None] = print) -> Path:
    """`source` converted to Q8_0 (made once, then found in the cache); `source` itself when the
    conversion fails."""
    target = converted_path(source)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be converting the same file
        if target.is_file():
            return target
        tmp = target.with_name(target.name + ".tmp")
        say(f"converting {source.name} to Q8_0 once for the CPU's faster prompt kernels "
            f"({target})")
        done = subprocess.run([sys.executable, "-m", "models.cpu_weights", str(source), str(tmp)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": _package_root()})
        if done.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            say(f"could not convert {source.name} to Q8_0 ({tail[0]}); serving it as it is")
            return source
        target.with_name(target.name + ".source").write_text(file_key(source))
        os.replace(tmp, target)  # atomic: a half-written file is never found
        prune(target.parent)
    return target


def prune(folder: Path) -> list[Path]:
    """Deletes the copies whose recorded source no longer exists as it was converted; returns
    them. A copy in use is never one of them (its run's source is there, unchanged), and a copy
    without a record (made before records were kept) is left alone."""
    removed = []
    for record in folder.glob("*.q8_0.gguf.source"):
        recorded = record.read_text()
        try:
            current = file_key(Path(recorded.rsplit(":", 2)[0]))
        except OSError:  # the source is gone
            current = None
        if current != recorded:
            copy = record.with_name(record.name.removesuffix(".source"))
            copy.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            removed.append(copy)
    return removed


def _package_root() -> str:
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)


def _convert(source: str, target: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True  # the source is quantized already: Q4_1 -> Q8_0 widens it
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)):
        raise SystemExit(f"llama_model_quantize failed for {source}")


if __name__ == "__main__":
    _convert(sys.argv[1], sys.argv[2])
