"""Skills by name. A skill is a folder under agents/ holding skill.toml, prompts/ and skill.py
(which names its class as `SKILL`); adding one touches nothing else."""

from __future__ import annotations

import importlib
from pathlib import Path

from agents.flow import Skill

SKILLS_ROOT = Path(__file__).parent


class UnknownSkill(ValueError):
    pass


def skill_names() -> list[str]:
    return sorted(p.parent.name for p in SKILLS_ROOT.glob("*/skill.toml"))


def load_skill(name: str) -> Skill:
    names = skill_names()
    if name not in names:
        raise UnknownSkill(f"unknown skill {name!r}; available: {', '.join(names)} "
                           "(see --list-skills)")
    module = importlib.import_module(f"agents.{name}.skill")
    return module.SKILL(SKILLS_ROOT / name)
