"""Decontamination against evaluation sets: a record whose prompt shares a long word n-gram
with an eval item (13-gram, as in GPT-3/Llama reports) or is close to one in embedding space is
rejected, and the hit is reported per eval source."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from dedup.exact import normalize
from dedup.near import one_thread

JSONL_FIELDS = ("question", "prompt", "instruction", "input", "text", "problem", "query")


class EvalFileError(ValueError):
    pass


@dataclass(frozen=True)
class Hit:
    source: str  # the eval file's name
    how: str  # "13-gram" or "cosine 0.93"


def read_eval_items(path: Path) -> list[str]:
    """TXT: one item per non-empty line. JSONL: the first of JSONL_FIELDS present per line."""
    if not path.is_file():
        raise EvalFileError(f"--decontaminate {path} does not exist; pass JSONL or TXT files of "
                            "benchmark questions")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"--decontaminate {path} cannot be read as UTF-8 text ({exc})") from None
    if path.suffix.lower() != ".jsonl":
        return [line.strip() for line in text.splitlines() if line.strip()]
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise EvalFileError(f"--decontaminate {path}:{n} is not valid JSON; fix or remove "
                                "the line") from None
        value = next((row[f] for f in JSONL_FIELDS if isinstance(row, dict)
                      and isinstance(row.get(f), str)), None)
        if value is None:
            raise EvalFileError(f"--decontaminate {path}:{n} has none of the fields "
                                f"{', '.join(JSONL_FIELDS)}")
        items.append(value)
    return items


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class Decontaminator:
    def __init__(self, files: list[Path], embedder, n: int = 13, cosine: float = 0.9) -> None:
        self.n, self.cosine, self.embedder = n, cosine, embedder
        self._grams: dict[tuple[str, ...], str] = {}
        self._sources: list[str] = []
        texts: list[str] = []
        for path in files:
            for item in read_eval_items(path):
                for gram in ngrams(item, n):
                    self._grams.setdefault(gram, path.name)
                texts.append(item)
                self._sources.append(path.name)
        self._index = faiss.IndexFlatIP(embedder.dim)
        if texts:
            self._index.add(np.ascontiguousarray(embedder.encode(texts), dtype=np.float32))

    def __len__(self) -> int:
        return len(self._sources)

    def check(self, prompt: str, vec: np.ndarray | None = None) -> Hit | None:
        """`prompt` is what the student sees; `vec`, if given, the instruction's unit embedding."""
        for gram in ngrams(prompt, self.n):
            if gram in self._grams:
                return Hit(self._grams[gram], f"{self.n}-gram")
        if vec is not None and self._index.ntotal:
            with one_thread():
                sims, ids = self._index.search(np.asarray(vec, np.float32).reshape(1, -1), 1)
            if sims[0, 0] >= self.cosine:
                return Hit(self._sources[int(ids[0, 0])], f"cosine {sims[0, 0]:.2f}")
        return None
