"""The dedup gates in front of data.jsonl: exact (normalized text) then embedding near-duplicate.

data.jsonl is the source of truth: on resume the near-duplicate index is loaded only if it agrees
with it, and rebuilt from it otherwise, so the gate can never drift from what was written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

from dedup import CorruptIndexError, ExactDedup, NearDupIndex
from retrieval import Embedder

log = logging.getLogger(__name__)
PASSED_KEPT = 4096  # prechecks remembered for the sink's check (one per item in flight)


def rejection_stage(reason: str) -> str:
    """The stage a gate rejection is filed under: a crowded region is a diversity matter."""
    return "diversity" if reason.startswith("dense region") else "dedup"


class DedupGate:
    def __init__(self, embedder: Embedder, threshold: float, state_path: Path,
                 density_radius: float = 0.0, density_max: int = 0) -> None:
        self.embedder = embedder
        self.threshold = threshold
        # density limit: at most `density_max` accepted instructions within `density_radius`
        # cosine of a new one, so a run cannot pile up in one corner of embedding space
        self.density_radius, self.density_max = density_radius, density_max
        self.state_path = state_path
        self.exact = ExactDedup()
        self.near = NearDupIndex(embedder.dim, threshold)
        self._unsaved = 0
        self._prepared: dict[str, np.ndarray] = {}
        # instruction -> (vectors stored, nearest cosine) when its precheck found it new: the
        # sink's check then scans only the vectors added since instead of searching them all
        self._passed: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # held while a commit writes the FAISS index in a thread: reads wait, FAISS is not
        # safe to search while it is written
        self._writing = asyncio.Lock()

    async def prepare(self, instructions: list[str]) -> None:
        """Embed a batch of instructions in one call (the sink drains every ready result at
        once); check() then uses these instead of one encode per record."""
        self._prepared = {}  # one batch at a time: nothing left over from the last one
        todo = list(dict.fromkeys(t for t in instructions if not self.exact.seen(t)))
        if todo:
            vecs = await self.embedder.aencode(todo)
            self._prepared = dict(zip(todo, vecs))

    async def restore(self, instructions: list[str]) -> None:
        self._passed.clear()  # positions below refer to the index being replaced
        for text in instructions:
            self.exact.add(text)
        loaded = None
        if self.state_path.exists():
            try:
                loaded = NearDupIndex.load(self.state_path, self.threshold)
            except CorruptIndexError as exc:
                log.warning("%s", exc)
        if loaded is not None and await self._is_prefix(loaded, instructions):
            # saved some commits ago (saves grow sparse as the index grows): embed the rest
            missing = instructions[loaded.ntotal:]
            self.near = loaded
            if missing:
                self.near.add_many(await asyncio.to_thread(self.embedder.encode, missing))
                self.save()
            return
        if loaded is not None:
            log.info("near-duplicate index (%d items) does not match data.jsonl (%d): rebuilding",
                     loaded.ntotal, len(instructions))
        self.near = NearDupIndex(self.embedder.dim, self.threshold)
        if instructions:
            self.near.add_many(await asyncio.to_thread(self.embedder.encode, instructions))
        self.save()

    async def _is_prefix(self, index: NearDupIndex, instructions: list[str]) -> bool:
        """Whether the saved index holds data.jsonl's first records: commits follow the file's
        order, so its last vector must embed the same instruction as that line."""
        n = index.ntotal
        if n > len(instructions):
            return False
        if n == 0:
            return True
        last = (await asyncio.to_thread(self.embedder.encode, [instructions[n - 1]]))[0]
        last = last / np.linalg.norm(last)
        return float(np.dot(index.vector(n - 1), last)) > 0.999

    async def check(self, instruction: str) -> tuple[str | None, np.ndarray | None, float]:
        """(rejection reason or None, the embedding to commit, nearest similarity)."""
        if self.exact.seen(instruction):
            return "exact duplicate", None, 1.0
        vec = await self._embedding(instruction)
        passed = self._passed.pop(instruction, None)
        if passed is None:
            return self.verdict(instruction, vec)
        # its precheck searched everything stored then; only later commits can match it now
        stored, similarity = passed
        similarity = max(similarity, self.near.nearest_since(vec, stored))
        if self.near.duplicate_at(similarity):
            return self._near_reason(), None, similarity
        return None, vec, similarity

    async def _embedding(self, instruction: str) -> np.ndarray:
        """From the batch prepare() embedded, else embedded now."""
        vec = self._prepared.get(instruction)
        return (await self.embedder.aencode([instruction]))[0] if vec is None else vec

    async def precheck(self, instruction: str) -> tuple[str, str] | None:
        """(stage, reason) the sink's check would reject with now, or None; nothing is
        committed. For the flows, before an answer is paid for (the embedder remembers the
        embedding, so the sink's check reuses it). Waits for a commit running in a thread."""
        if self.exact.seen(instruction):
            return "dedup", "exact duplicate"
        vec = await self._embedding(instruction)
        async with self._writing:
            reason, _, similarity = self.verdict(instruction, vec)
            if reason is None and not self.density_max:  # a density verdict needs a search
                self._passed[instruction] = (self.near.ntotal, similarity)
                if len(self._passed) > PASSED_KEPT:  # items abandoned after their precheck
                    self._passed.popitem(last=False)
        return None if reason is None else (rejection_stage(reason), reason)

    def verdict(self, instruction: str, vec: np.ndarray) -> tuple[str | None, np.ndarray | None,
                                                                 float]:
        """check() for an instruction already embedded (no I/O): also what the job-wide gate of
        `--executor ray` decides with, on vectors its workers computed."""
        if self.exact.seen(instruction):
            return "exact duplicate", None, 1.0
        duplicate, similarity = self.near.is_duplicate(vec)
        if duplicate:
            return self._near_reason(), None, similarity
        if self.density_max and self.density_radius:
            crowd = self.near.neighbours_within(vec, self.density_radius, self.density_max + 1)
            if crowd > self.density_max:
                return (f"dense region ({crowd} accepted within cosine {self.density_radius})",
                        None, similarity)
        return None, vec, similarity

    def _near_reason(self) -> str:
        return f"near duplicate (cosine >= {self.threshold})"

    def commit(self, instruction: str, vec: np.ndarray, save_every: int = 25) -> None:
        self.exact.add(instruction)
        self.near.add(vec)
        self._unsaved += 1
        if self._save_due(self._unsaved, save_every):
            self.save()

    async def acommit(self, instruction: str, vec: np.ndarray, save_every: int = 25) -> None:
        """commit() from the event loop. The rare heavy one (a re-clustering: 11-12 s at
        ~262k; a save: ~1 GB at 1M) runs in a thread, so the teacher's calls go on being sent
        and read meanwhile; prechecks wait for it."""
        heavy = self.near.rebuilds_at_next_add() or self._save_due(self._unsaved + 1, save_every)
        if not heavy:
            self.commit(instruction, vec, save_every)
            return
        async with self._writing:
            await asyncio.to_thread(self.commit, instruction, vec, save_every)

    def _save_due(self, unsaved: int, save_every: int) -> bool:
        """Whether `unsaved` records since the last save call for one. A save rewrites the
        whole index (~0.8 GB at 1M): after 5% growth, not every 25; a resume embeds only the
        records since the last save (restore)."""
        saved = self.near.ntotal - self._unsaved  # what the last save held: a commit keeps it
        return unsaved >= max(save_every, saved // 20)

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.near.save(self.state_path)
        self._unsaved = 0
