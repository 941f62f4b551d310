"""The run's configuration: one validated object built from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.flow import FlowSettings
from models import TeacherSettings


RAY_ONLY = ("ray_address", "ray_workers", "gpus_per_teacher", "cpus_per_teacher")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    skill: str = Field(description="a skill, a comma-separated list, or 'all'")
    mix: dict[str, float] | None = Field(None, description="relative share of records per skill")
    input: Path
    out: Path
    num: int = Field(20, ge=1)
    seed: int = 0
    teacher: TeacherSettings = TeacherSettings()
    flow: FlowSettings = FlowSettings()
    embedder: Path | None = None
    near_dup_threshold: float = Field(0.9, gt=0, le=1)
    chunk_size: int = Field(1200, ge=200)
    chunk_overlap: int = Field(200, ge=0)
    max_attempts: int | None = Field(None, ge=1)
    format: Literal["openai", "sharegpt", "alpaca"] = "openai"
    decontaminate: list[Path] = Field(default_factory=list, description="eval sets (JSONL/TXT)")
    decontam_ngram: int = Field(13, ge=4, le=50)
    decontam_cosine: float = Field(0.9, gt=0, le=1)
    density_radius: float = Field(0.8, ge=0, le=1, description="cosine radius of the density "
                                  "limit")
    density_max: int = Field(0, ge=0, description="max accepted instructions within "
                             "density_radius of a new one; 0 = off")
    max_type_share: float = Field(2.0, ge=0, description="diversity gate: a subcategory holds at "
                                  "most this × its fair share of a skill's records; 0 = off")
    force: bool = False
    # scale-out (engine/distributed): how the run is executed, not what it generates, so none of
    # these is part of generation_key
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, description="Ray cluster to join ('auto', "
                                    "'HOST:PORT', 'ray://HOST:10001'); default: start one here")
    ray_workers: int | None = Field(None, ge=1, description="teacher workers (default: as many "
                                    "as the cluster's CPUs/GPUs fit)")
    gpus_per_teacher: float | None = Field(None, ge=0, description="GPUs each worker's teacher "
                                           "reserves (Ray resource request)")
    cpus_per_teacher: float | None = Field(None, gt=0, description="CPU cores each worker "
                                           "reserves (and its llama-server's threads); default 1")

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        ray_only = [f"--{k.replace('_', '-')}" for k in RAY_ONLY if getattr(self, k) is not None]
        if self.executor == "local" and ray_only:
            raise ValueError(f"{', '.join(ray_only)} only apply to --executor ray")
        if (self.gpus_per_teacher or 0) > 0 and self.teacher.gpu_layers == 0 \
                and not self.teacher.url:
            raise ValueError("--gpus-per-teacher reserves GPUs, but --gpu-layers 0 keeps the "
                             "model on the CPU; add --gpu-layers -1 (offload all layers)")
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("--chunk-overlap must be smaller than --chunk-size")
        if 0 < self.max_type_share < 1:
            raise ValueError("--max-type-share must be 0 (off) or at least 1 (its fair share)")
        names = self.skills
        for name, weight in (self.mix or {}).items():
            if name not in names:
                raise ValueError(f"--mix names {name!r}, which is not among the skills "
                                 f"being run ({', '.join(names)})")
            if not weight > 0:
                raise ValueError(f"--mix weight for {name!r} must be positive, got {weight}")
        return self

    @property
    def skills(self) -> list[str]:
        """The skill names this run generates (validated against the registry)."""
        from agents.registry import UnknownSkill, skill_names

        if self.skill.strip() == "all":
            return skill_names()
        names = [n.strip() for n in self.skill.split(",") if n.strip()]
        if not names:
            raise UnknownSkill("--skill is empty; name a skill, several (a,b) or 'all'")
        known = skill_names()
        for name in names:
            if name not in known:
                raise UnknownSkill(f"unknown skill {name!r}; available: {', '.join(known)} "
                                   "(see --list-skills)")
        return list(dict.fromkeys(names))

    def weights(self) -> dict[str, float]:
        """Relative share per skill: --mix where given, 1 for the skills it does not name."""
        return {n: (self.mix or {}).get(n, 1.0) for n in self.skills}

    @property
    def attempts_cap(self) -> int:
        return self.max_attempts or self.num * 50

    def generation_key(self, teacher_name: str) -> dict:
        """What defines the data: changing any of these on an existing --out is refused."""
        return {"skill": ",".join(self.skills), "seed": self.seed, "teacher": teacher_name,
                "format": self.format}
