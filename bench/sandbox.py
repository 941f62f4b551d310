"""Startup cost of the code sandbox: trivial snippets per second through run_python.

    python bench/sandbox.py [--runs 50] [--concurrency 4]

Runs the same one-line snippet N times one after another, then N times with C in flight, and
prints snippets per wall second for each and the ratio concurrent / sequential. The snippet does
no work, so this measures what every tool call pays: namespaces, mounts, two interpreters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.tools import run_python  # noqa: E402
from agents.tools.sandbox_isolation import detect_isolation  # noqa: E402

SNIPPET = "print(6 * 7)"


async def _one() -> None:
    result = await run_python(SNIPPET)
    if not result.ok or result.stdout != "42\n":
        raise SystemExit(f"sandbox run failed: {result!r}")


async def _sequential(runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        await _one()
    return runs / (time.perf_counter() - started)


async def _concurrent(runs: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def limited() -> None:
        async with slots:
            await _one()

    started = time.perf_counter()
    await asyncio.gather(*(limited() for _ in range(runs)))
    return runs / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    isolation = detect_isolation()
    await _one()  # warm-up: page cache, first-call probe
    sequential = await _sequential(args.runs)
    concurrent = await _concurrent(args.runs, args.concurrency)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"isolation: namespaces={isolation.namespaces} uid={isolation.sandbox_uid} "
          f"python={isolation.python}")
    print(f"sequential:    {sequential:6.1f} snippets/s  ({1000 / sequential:5.1f} ms each)")
    print(f"concurrent x{args.concurrency}: {concurrent:6.1f} snippets/s")
    print(f"ratio concurrent/sequential: {concurrent / sequential:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
