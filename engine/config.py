"""The run's configuration: one validated object built from the command line."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.flow import FlowSettings
from models import TeacherSettings


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    skill: str
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
    force: bool = False

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("--chunk-overlap must be smaller than --chunk-size")
        return self

    @property
    def attempts_cap(self) -> int:
        return self.max_attempts or self.num * 50

    def generation_key(self, teacher_name: str) -> dict:
        """What defines the data: changing any of these on an existing --out is refused."""
        return {"skill": self.skill, "seed": self.seed, "teacher": teacher_name}
