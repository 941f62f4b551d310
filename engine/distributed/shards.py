"""Which seed chunks each shard plans from, and its share of --num and of --max-attempts.

Quota: split deterministically, not handed out at run time. Each skill's quota is divided over
the shards that hold seed chunks for it (largest remainder, so shares sum exactly to the quota),
which keeps every shard a self-contained resumable run: its share, its item ids and what it has
written fix what is left, whatever worker runs it, after a kill or on another day. The price is
that the slowest shard sets the end of the job (no work stealing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from engine.distributed.parts import part_name
from engine.pipeline import quotas

ATTEMPTS_PER_RECORD = 50  # the single-machine default cap: 50 × --num


@dataclass(frozen=True)
class ShardPlan:
    shard: int
    seeds: dict[str, list[str]]  # skill -> seed chunk ids this shard plans from
    quota: dict[str, int]  # skill -> records this shard must accept
    max_attempts: int

    @property
    def name(self) -> str:
        return part_name(self.shard)

    @property
    def num(self) -> int:
        return sum(self.quota.values())


def deal(chunk_ids: list[str], shards: int) -> list[list[str]]:
    """Chunks dealt round robin in the order of a hash of their ids: shard sizes differ by at most
    one, and a corpus always deals the same way, so a shard's work items (and ids) are fixed."""
    order = sorted(chunk_ids, key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    return [order[i::shards] for i in range(shards)]


def plan_shards(seeds: dict[str, list[str]], quota: dict[str, int], shards: int,
                max_attempts: int | None) -> list[ShardPlan]:
    """`seeds`: skill -> all its seed chunk ids; `quota`: skill -> records (sums to --num)."""
    dealt = {skill: deal(ids, shards) for skill, ids in seeds.items()}
    shares: list[dict[str, int]] = [{} for _ in range(shards)]
    for skill, q in quota.items():
        holders = {part_name(s): 1.0 for s in range(shards) if dealt[skill][s]}
        split = quotas(q, holders) if holders else {}
        for s in range(shards):
            shares[s][skill] = split.get(part_name(s), 0)
    nums = {part_name(s): sum(shares[s].values()) for s in range(shards)}
    if max_attempts is None:
        attempts = {name: ATTEMPTS_PER_RECORD * n for name, n in nums.items()}
    else:  # the cap is for the whole job: shared in proportion to each shard's records
        working = {name: float(n) for name, n in nums.items() if n}
        attempts = quotas(max_attempts, working) if working else {}
    return [ShardPlan(shard=s, seeds={k: v[s] for k, v in dealt.items()}, quota=shares[s],
                      max_attempts=attempts.get(part_name(s), 0)) for s in range(shards)]
