"""The on-disk layout of a sharded run (`--executor ray`); plain files, no Ray needed to read it.

  OUT/parts/manifest.json      the shards, each one's share of --num; written by the driver
  OUT/parts/<NNN>/data.jsonl   one shard's accepted records, appended by the worker running it
  OUT/parts/<NNN>/rejected.jsonl
  OUT/data.jsonl, rejected.jsonl   all parts concatenated, written by the driver when a run ends

The parts are the source of truth: `export` and resume read them, never the merged copies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from engine.sink import read_jsonl, repair_tail

MANIFEST_VERSION = 1
OUTPUTS = ("data.jsonl", "rejected.jsonl")


class PartsError(ValueError):
    """OUT/parts is unusable (a damaged manifest); the parts themselves are never touched."""


def part_name(shard: int) -> str:
    return f"{shard:03d}"


def parts_dir(out: Path) -> Path:
    return out / "parts"


def part_dir(out: Path, shard: int) -> Path:
    return parts_dir(out) / part_name(shard)


def manifest_path(out: Path) -> Path:
    return parts_dir(out) / "manifest.json"


def is_sharded(out: Path) -> bool:
    return manifest_path(out).exists()


def read_manifest(out: Path) -> dict | None:
    path = manifest_path(out)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), int) \
                or manifest["shards"] < 1:
            raise ValueError("no positive 'shards' count")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PartsError(f"{path} is damaged ({exc}); restore it (the records under "
                         f"{parts_dir(out)} are intact), or move {parts_dir(out)} aside") from exc
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    path = manifest_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": MANIFEST_VERSION, **manifest}, indent=2) + "\n")
    os.replace(tmp, path)


def shard_count(out: Path) -> int | None:
    manifest = read_manifest(out)
    return None if manifest is None else manifest["shards"]


def part_records(out: Path, name: str = "data.jsonl") -> Iterator[dict]:
    """Every part's records of one kind, shard by shard (the merged file's order)."""
    for shard in range(shard_count(out) or 0):
        yield from read_jsonl(part_dir(out, shard) / name)


def merge(out: Path) -> dict[str, int]:
    """Write OUT/data.jsonl and OUT/rejected.jsonl as the parts' concatenation (the same layout
    a single-machine run writes). Run only while no worker writes: torn tails are repaired.
    Each file is replaced whole, so a crash here leaves the previous copy, never half of one."""
    counts = {}
    for name in OUTPUTS:
        target = out / name
        tmp = target.with_suffix(".jsonl.tmp")
        lines = 0
        with open(tmp, "wb") as dst:
            for shard in range(shard_count(out) or 0):
                src = part_dir(out, shard) / name
                if not src.exists():
                    continue
                repair_tail(src)
                with open(src, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        dst.write(block)
                        lines += block.count(b"\n")
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        counts[name] = lines
    return counts
