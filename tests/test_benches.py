"""Bench scripts still run against the engine's current API (they are run by hand, so a change
inside the engine can break one unseen: peers.py once measured nothing but errors for a day).
The cheap ones run here on tiny inputs; their figures are not checked, only that they work."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_engine_overhead_bench_runs_the_whole_pipeline():
    done = subprocess.run([sys.executable, "bench/engine_overhead.py", "--num", "40",
                           "--embedder", "hash"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    accepted = re.search(r"skill mcq: (\d+) accepted", done.stdout)
    assert accepted and int(accepted.group(1)) == 40, done.stdout
    assert "records/s" in done.stdout


def test_dedup_scale_bench_measures_a_small_index():
    done = subprocess.run([sys.executable, "bench/dedup_scale.py", "--sizes", "2000", "--probe",
                           "100", "--sets", "synthetic", "--kinds", "exact,auto"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("synthetic")]
    assert len(rows) == 2 and all("recall 50/50" in row for row in rows), done.stdout
