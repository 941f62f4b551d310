"""Scale-out: the same run on a Ray cluster (`--executor ray`). Ray is imported only when a run
uses it; the part layout (parts.py) and sharding (shards.py) need no Ray."""

from __future__ import annotations


async def run_ray(cfg, progress, teacher_opener=None) -> dict:
    from engine.distributed.ray_run import run_ray as _run_ray

    if teacher_opener is None:
        return await _run_ray(cfg, progress)
    return await _run_ray(cfg, progress, teacher_opener)
