"""Sampler settings sent with each request to a llama.cpp teacher, in llama-server's names."""

from __future__ import annotations

import re

# min-p drops the improbable tail a small model wanders into; DRY penalises extending a run of
# tokens that repeats one in the last 256 (the prompt's tail included): the loops a 135M teacher
# falls into ("the passage says the passage says", "1.1.1.1.1"). Runs of up to 4 tokens repeat
# freely, so names and short phrases copied from a passage cost nothing. Measured on the RAG
# skill (bench/RESULTS.md): accepted records 3 → 12 of 60 items, waste 93% → 73%.
SMALL_TEACHER = {"min_p": 0.1, "dry_multiplier": 0.8, "dry_base": 1.75,
                 "dry_allowed_length": 4, "dry_penalty_last_n": 256}

# set per call by the engine (each stage has its temperature, each item its seed)
ENGINE_OWNED = frozenset({"temperature", "seed", "max_tokens", "n_predict", "stream", "grammar",
                          "json_schema", "response_format", "messages", "model", "cache_prompt"})
# what llama-cpp-python's create_chat_completion takes (no DRY there)
IN_PROCESS = frozenset({"top_p", "top_k", "min_p", "typical_p", "presence_penalty",
                        "frequency_penalty", "repeat_penalty", "tfs_z", "mirostat_mode",
                        "mirostat_tau", "mirostat_eta"})


def check_sampling(values: dict[str, int | float]) -> dict[str, int | float]:
    for key in values:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ValueError(f"sampler setting {key!r} is not a llama.cpp parameter name")
        if key in ENGINE_OWNED:
            raise ValueError(f"sampler setting {key!r} is set by the engine per call "
                             "(use --temperature / --max-tokens / --seed)")
    return values


def parse_sampling(text: str) -> dict[str, int | float]:
    """`min_p=0.05,dry_multiplier=0` → {"min_p": 0.05, "dry_multiplier": 0}; `off` → {}."""
    if text.strip().lower() in ("off", "none", ""):
        return {}
    values: dict[str, int | float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or number is None:
            raise ValueError(f"expected KEY=NUMBER[,KEY=NUMBER...] or 'off', got {part.strip()!r}")
        values[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    return check_sampling(values)
