"""`python -m engine export OUT --to parquet|hf`: the accepted records as Parquet files and/or a
Hugging Face `datasets` directory, one split per skill (named like orca-agentinstruct-1M's), with
an optional validation split that shares no source document with training."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from engine.distributed.parts import PartsError, is_sharded, part_records, parts_dir, shard_count
from engine.formats import to_messages
from engine.sink import read_jsonl


class ExportError(RuntimeError):
    pass


def is_validation(doc_path: str, share: float) -> bool:
    """Split by source document (a stable hash of its path), never by record, so no seed
    document feeds both sides."""
    if share <= 0:
        return False
    h = int(hashlib.sha256(doc_path.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share


def _row(rec: dict) -> dict:
    meta = rec.get("metadata", {})
    return {
        "id": rec["id"], "skill": rec["skill"], "subcategory": rec["subcategory"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in to_messages(rec)],
        # metadata differs per skill: one JSON column keeps the schema stable across splits
        "metadata": json.dumps(meta, ensure_ascii=False, sort_keys=True),
    }


def _records(out: Path) -> tuple[Path, Iterator[dict]]:
    """(what is read, its records): the parts of an `--executor ray` run (always current, even
    when the run was interrupted before it merged them), else data.jsonl."""
    if is_sharded(out):
        try:
            shard_count(out)
        except PartsError as exc:
            raise ExportError(str(exc)) from None
        return parts_dir(out), part_records(out)
    data = out / "data.jsonl"
    if not data.exists():
        raise ExportError(f"{data} does not exist; run the engine with --out {out} first")
    return data, read_jsonl(data)


def collect(out: Path, validation_share: float = 0.0) -> dict[str, list[dict]]:
    data, records = _records(out)
    splits: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        meta = rec.get("metadata", {})
        name = meta.get("split") or rec["skill"]
        doc = (meta.get("source") or {}).get("doc_path", rec["id"])
        if is_validation(doc, validation_share):
            name += "_validation"
        splits[name].append(_row(rec))
    if not splits:
        raise ExportError(f"{data} holds no records yet; nothing to export")
    return dict(sorted(splits.items()))


def export(out: Path, to: list[str], dest: Path | None = None,
           validation_share: float = 0.0) -> dict[str, Path]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    splits = collect(out, validation_share)
    dest = dest or out / "export"
    written: dict[str, Path] = {}
    if "parquet" in to:
        folder = dest / "parquet"
        _fresh(folder)
        for name, rows in splits.items():
            pq.write_table(pa.Table.from_pylist(rows), folder / f"{name}.parquet")
        written["parquet"] = folder
    if "hf" in to:
        folder = dest / "hf"
        tmp = folder.with_name(folder.name + ".tmp")
        _fresh(tmp)
        dd = datasets.DatasetDict({name: datasets.Dataset.from_list(rows)
                                   for name, rows in splits.items()})
        dd.save_to_disk(str(tmp))
        _fresh(folder)
        folder.rmdir()
        tmp.rename(folder)  # a finished directory or none: never a half-written dataset
        written["hf"] = folder
    return written


def _fresh(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
