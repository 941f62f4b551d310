"""One dedup decision for the whole job: `GlobalGate` runs as a single Ray actor; each worker's
sink talks to it through a `GateProxy`, which has the interface run_pipeline expects of a
DedupGate (prepare, check, commit, save).

Atomic across workers: the actor serves one call at a time, and `admit` checks an instruction
against everything committed *and* everything admitted but not yet written (pending), then
holds it as pending. So two workers cannot both accept near-identical records, even when both
ask in the same millisecond. The workers embed (their CPUs, batched per sink drain); the actor
only compares vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dedup import NearDupIndex, text_key
from engine.gate import DedupGate, rejection_stage


class _VectorsOnly:
    """The actor's stand-in embedder: it is handed vectors, never texts."""

    name = "vectors-from-workers"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, texts):
        raise RuntimeError("the job-wide dedup gate embeds nothing: the driver restores its "
                           "near-duplicate index and the workers embed what they send")


def _unit(vec: np.ndarray) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    return vec / max(float(np.linalg.norm(vec)), 1e-12)


class GlobalGate:
    """The state behind the dedup actor. Pending entries are kept per shard, so a worker that
    dies between admitting a record and writing it leaves nothing behind once the driver calls
    `forget(shard)`; a re-run of that shard may then produce the same instruction again."""

    def __init__(self, dim: int, threshold: float, state_path: Path, density_radius: float,
                 density_max: int, instructions: list[str]) -> None:
        self.gate = DedupGate(_VectorsOnly(dim), threshold, state_path, density_radius,
                              density_max)
        for text in instructions:
            self.gate.exact.add(text)
        # the driver restored the index from the parts and saved it just before: load, embed
        # nothing (the actor has no embedder)
        if state_path.exists():
            self.gate.near = NearDupIndex.load(state_path, threshold)
        if self.gate.near.ntotal != len(instructions):
            raise RuntimeError(f"{state_path} holds {self.gate.near.ntotal} instructions, the "
                               f"parts {len(instructions)}; re-run the same command (the driver "
                               "rebuilds it)")
        self.pending: dict[int, dict[str, tuple[str, np.ndarray]]] = {}

    def admit(self, shard: int, instruction: str, vec: np.ndarray,
              release: str | None = None) -> tuple[str | None, float]:
        """(rejection reason or None, nearest similarity). None: the instruction is now pending
        for `shard` until commit(). `release`: the shard's previous admission, which its sink
        rejected after all (a later gate) — dropped first."""
        if release is not None:
            self.pending.get(shard, {}).pop(release, None)
        reason, _, similarity = self.gate.verdict(instruction, vec)
        if reason is not None:
            return reason, similarity
        key, unit = text_key(instruction), _unit(vec)
        for held in self.pending.values():
            for other_key, other in held.values():
                if other_key == key:
                    return "exact duplicate", 1.0
                cosine = float(other @ unit)
                similarity = max(similarity, cosine)
                if cosine >= self.gate.threshold - 1e-6:
                    return f"near duplicate (cosine >= {self.gate.threshold})", similarity
        self.pending.setdefault(shard, {})[instruction] = (key, unit)
        return None, similarity

    def peek(self, instruction: str, vec: np.ndarray) -> str | None:
        """Would the committed records reject this? (no admission; the flows ask early)"""
        return self.gate.verdict(instruction, vec)[0]

    def commit(self, shard: int, instruction: str, vec: np.ndarray) -> None:
        """The record is in the shard's data.jsonl: it joins the index. Once: a dead worker's
        commit may land after `settle` has committed the same record for it."""
        self.pending.get(shard, {}).pop(instruction, None)
        if not self.gate.exact.seen(instruction):
            self.gate.commit(instruction, vec)

    def forget(self, shard: int) -> None:
        self.pending.pop(shard, None)

    def held(self, shard: int) -> list[str]:
        """The shard's admissions not yet committed."""
        return list(self.pending.get(shard, {}))

    def settle(self, shard: int, written: list[str]) -> int:
        """After the shard's worker died: its admissions that did reach data.jsonl (killed
        between the write and its commit, which is sent unawaited) join the index, the rest are
        dropped. Returns how many were committed."""
        held, committed = self.pending.pop(shard, {}), 0
        for instruction in written:
            if instruction in held and not self.gate.exact.seen(instruction):
                self.gate.commit(instruction, held[instruction][1])
                committed += 1
        return committed

    def save(self) -> int:
        self.gate.save()
        return self.gate.near.ntotal

    def committed(self) -> int:
        return self.gate.near.ntotal

    def vectors(self) -> np.ndarray:
        return self.gate.near.vectors()


class GateProxy:
    """A worker's side of the job-wide gate, in DedupGate's shape for run_pipeline's sink.

    The sink settles one result at a time: check() → (rejected by a later gate | written, then
    commit()) → the next check(). So an admission not committed by the next check() was rejected
    downstream (decontamination, format): that next call releases it, and the shard's end (or
    the driver, after a crash) forgets whatever is left."""

    def __init__(self, actor, shard: int, embedder) -> None:
        self.actor, self.shard, self.embedder = actor, shard, embedder
        self._prepared: dict[str, np.ndarray] = {}
        self._open: str | None = None

    async def prepare(self, instructions: list[str]) -> None:
        self._prepared = {}
        todo = list(dict.fromkeys(instructions))
        if todo:
            vecs = await self.embedder.aencode(todo)
            self._prepared = dict(zip(todo, vecs))

    async def check(self, instruction: str) -> tuple[str | None, np.ndarray | None, float]:
        vec = self._prepared.get(instruction)
        if vec is None:
            vec = (await self.embedder.aencode([instruction]))[0]
        release, self._open = self._open, None
        reason, similarity = await self.actor.admit.remote(self.shard, instruction, vec, release)
        if reason is not None:
            return reason, None, similarity
        self._open = instruction
        return None, vec, similarity

    async def precheck(self, instruction: str) -> tuple[str, str] | None:
        vec = (await self.embedder.aencode([instruction]))[0]
        reason = await self.actor.peek.remote(instruction, vec)
        return None if reason is None else (rejection_stage(reason), reason)

    def commit(self, instruction: str, vec: np.ndarray) -> None:
        self._open = None
        # not awaited: Ray runs one caller's calls to an actor in the order they were made, so
        # this lands before this worker's next admit
        self.actor.commit.remote(self.shard, instruction, vec)

    async def acommit(self, instruction: str, vec: np.ndarray) -> None:
        self.commit(instruction, vec)  # sent, not awaited: nothing heavy runs here

    def save(self) -> None:
        pass  # the actor saves the index
