"""Search API under load: the real `python -m retrieval.serve` hit by 1,000 concurrent requests.

    python bench/search_load.py [--input DIR] [--requests 1000] [--sequential 100]

Builds an index over --input (default: ../shared/corpus, real HTML pages), starts the server as
a subprocess on 127.0.0.1 with an ephemeral port, and sends on loopback:
  1. --sequential good searches one at a time (the concurrency-1 baseline);
  2. --requests good searches all in flight at once: served, errors, req/s, latency percentiles;
  3. --requests again, a third of them malformed (bad JSON, huge k, huge query, oversized body,
     wrong content type): every bad one must get its 4xx JSON error, never a 500.
Prints the ratio of throughput at full concurrency to the baseline. Exits 1 if any request
failed or got the wrong answer, or the server logged a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from retrieval.index import CorpusIndex  # noqa: E402
from retrieval.serve import MAX_BODY_BYTES  # noqa: E402

# What someone reading the Debian Administrator's Handbook sections would ask.
QUERIES = [
    "how do I upgrade from one Debian release to the next",
    "apt full-upgrade versus upgrade",
    "which package contains a given file",
    "updating the apt-file cache",
    "set up a firewall with iptables rules",
    "nftables chains and tables",
    "what to do when a server has been compromised",
    "forensic analysis of a hacked machine",
    "unattended installation with preseeding",
    "FAI fully automatic installation",
    "booting a live CD with Knoppix",
    "configure IPv6 on a network interface",
    "IPv6 tunnel to reach the IPv6 internet",
    "build my first Debian package",
    "rebuild a package from source with dpkg-buildpackage",
    "migrating an existing server to Debian",
    "survey and identify the services running on the old machine",
    "configuring the locale and language",
    "set the timezone and synchronise the clock with NTP",
    "sharing a user database between machines",
    "who contributed to the handbook",
    "translations of the book",
    "future editions of the Debian handbook",
    "backing up configuration before migration",
    "disconnect the compromised server from the network",
    "block incoming connections on port 22",
    "NAT masquerading for a local network",
    "simple-cdd to build a custom installer",
    "ip6tables filtering",
    "configure the keyboard layout in the console",
]
JSON = {"Content-Type": "application/json"}
# Malformed requests, by kind: (expected status, aiohttp request kwargs).
BAD = {
    "bad json": (400, {"data": b'{"query": "firewall", ', "headers": JSON}),
    "huge k": (400, {"json": {"query": "firewall", "k": 10**9}}),
    "huge query": (400, {"json": {"query": "iptables " * 400}}),
    "oversized body": (413, {"json": {"query": "x" * (MAX_BODY_BYTES + 1024)}}),
    "wrong content type": (415, {"data": '{"query": "apt"}', "headers": {"Content-Type": "text/plain"}}),
}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def good_request(i: int) -> tuple[str, dict[str, Any], int]:
    k = 1 + i % 8
    return "good", {"json": {"query": QUERIES[i % len(QUERIES)], "k": k}}, k


def bad_request(kind: str) -> tuple[str, dict[str, Any], int]:
    status, kwargs = BAD[kind]
    return kind, kwargs, status


async def send(
    session: aiohttp.ClientSession, base: str, kind: str, kwargs: dict[str, Any], want: int,
    chunks: int, tally: Tally,
) -> None:
    """One POST /search; `want` is k for a good request, the expected status for a bad one."""
    started = time.perf_counter()
    try:
        async with session.post(f"{base}/search", **kwargs) as r:
            body = await r.json(content_type=None)
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        tally.error(f"{kind}: {type(exc).__name__}")
        return
    tally.latencies.append(time.perf_counter() - started)
    if kind == "good":
        results = body.get("results") if isinstance(body, dict) else None
        if status == 200 and isinstance(results, list) and len(results) == min(want, chunks):
            tally.ok += 1
        else:
            tally.error(f"good: HTTP {status}")
    elif status == want and isinstance(body, dict) and isinstance(body.get("error"), str):
        tally.ok += 1
    else:
        tally.error(f"{kind}: HTTP {status} (want {want})")


async def fire(base: str, requests: list[tuple[str, dict[str, Any], int]], concurrency: int,
               chunks: int) -> tuple[Tally, float]:
    tally = Tally()
    # limit=0: the client itself must not cap what is in flight; the server is what is measured.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    gate = asyncio.Semaphore(concurrency)

    async def one(req: tuple[str, dict[str, Any], int]) -> None:
        async with gate:
            await send(session, base, *req, chunks, tally)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        elapsed = time.perf_counter() - started
    return tally, elapsed


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def report(label: str, tally: Tally, elapsed: float, total: int) -> float:
    lat = sorted(tally.latencies)
    rate = total / elapsed
    errors = sum(tally.errors.values())
    print(f"{label}: {tally.ok}/{total} answered correctly, {errors} errors, "
          f"{rate:.0f} req/s in {elapsed:.1f}s")
    print(f"  latency ms: p50 {percentile(lat, 50) * 1000:.0f}  p95 {percentile(lat, 95) * 1000:.0f}"
          f"  p99 {percentile(lat, 99) * 1000:.0f}  max {(lat[-1] if lat else float('nan')) * 1000:.0f}")
    for what, n in sorted(tally.errors.items()):
        print(f"  error {n} x {what}")
    return rate


def start_server(index_dir: Path, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrieval.serve", "--index", str(index_dir), "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    log.close()
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                return proc, line.split(" at ", 1)[1].split()[0]
    proc.kill()
    raise SystemExit(f"server did not start: {log_path.read_text()[-2000:]}")


async def run_passes(base: str, chunks: int, n: int, sequential: int) -> bool:
    good = [good_request(i) for i in range(n)]
    await fire(base, good[:10], 1, chunks)  # warm-up: first forward pass, connection setup

    tally_seq, t_seq = await fire(base, good[:sequential], 1, chunks)
    rate_seq = report("concurrency 1", tally_seq, t_seq, sequential)
    tally_conc, t_conc = await fire(base, good, n, chunks)
    rate_conc = report(f"concurrency {n}", tally_conc, t_conc, n)

    # A third malformed, interleaved so bad requests arrive among good ones.
    kinds = list(BAD)
    mixed = [good_request(i) if i % 3 else bad_request(kinds[i // 3 % len(kinds)]) for i in range(n)]
    tally_mix, t_mix = await fire(base, mixed, n, chunks)
    report(f"mixed, concurrency {n}", tally_mix, t_mix, n)
    counts = {k: sum(1 for r in mixed if r[0] == k) for k in ["good", *kinds]}
    print("  sent: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    server_errors = sum(v for k, v in tally_mix.errors.items() if "HTTP 5" in k)
    print(f"  5xx answers: {server_errors}")

    async with aiohttp.ClientSession() as session, session.get(f"{base}/health") as r:
        healthy = r.status == 200
    print(f"health after load: {'ok' if healthy else f'HTTP {r.status}'}")
    print(f"ratio throughput concurrency {n} / concurrency 1: {rate_conc / rate_seq:.2f}x")
    return healthy and not (tally_seq.errors or tally_conc.errors or tally_mix.errors)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=100)
    args = parser.parse_args()
    if not args.input.exists():
        print(f"error: input {args.input} does not exist; pass --input DIR with documents",
              file=sys.stderr)
        return 2

    from retrieval.embedder import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index = CorpusIndex.build_or_load(args.input, Path(tmp) / "idx", Embedder())
        chunks = len(index)
        del index
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        print(f"index: {chunks} chunks from {args.input} in {time.perf_counter() - started:.1f}s")
        log_path = Path(tmp) / "server.log"
        proc, base = start_server(Path(tmp) / "idx", log_path)
        try:
            passed = asyncio.run(run_passes(base, chunks, args.requests, args.sequential))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            proc.stdout.close()
        log = log_path.read_text()
        tracebacks = log.count("Traceback")
        print(f"server log: {tracebacks} tracebacks")
        if tracebacks:
            print(log[-3000:])
    return 0 if passed and not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
