"""After every run: OUT/stats.json, OUT/plots/*.png and OUT/README.md, a dataset card in the
Hugging Face conventions, computed from data.jsonl and rejected.jsonl (so they describe
everything the directory holds, across resumed runs)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from engine.formats import to_messages

VENDI_SAMPLE = 2000  # Vendi and nearest-neighbour statistics are O(n²): measured on a sample
_TOKEN = re.compile(r"\w+")


# -- diversity metrics ---------------------------------------------------------------------------

def vendi_score(unit_vectors: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine-similarity matrix (Friedman & Dieng
    2023): 1 when all items are the same, n when all are orthogonal."""
    n = len(unit_vectors)
    if n == 0:
        return 0.0
    x = unit_vectors.astype(np.float64)
    # the non-zero eigenvalues of X Xᵀ/n equal those of Xᵀ X/n (d×d: cheaper when n > d)
    gram = (x.T @ x if n > x.shape[1] else x @ x.T) / n
    eig = np.clip(np.linalg.eigvalsh(gram), 0, None)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams (Li et al. 2016), over lowercase word tokens."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _TOKEN.findall(text.lower())
        grams += [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_nearest_cosine(unit_vectors: np.ndarray) -> float | None:
    if len(unit_vectors) < 2:
        return None
    sims = unit_vectors @ unit_vectors.T
    np.fill_diagonal(sims, -np.inf)
    return float(sims.max(axis=1).mean())


def diversity(instructions: list[str], unit_vectors: np.ndarray, seed: int = 0) -> dict:
    if len(unit_vectors) > VENDI_SAMPLE:
        pick = np.random.default_rng(seed).choice(len(unit_vectors), VENDI_SAMPLE, replace=False)
        unit_vectors = unit_vectors[np.sort(pick)]
    nn = mean_nearest_cosine(unit_vectors)
    return {
        "vendi_score": round(vendi_score(unit_vectors), 3),
        "vendi_sample": len(unit_vectors),
        "distinct_1": round(distinct_n(instructions, 1), 4),
        "distinct_2": round(distinct_n(instructions, 2), 4),
        "mean_nearest_neighbour_cosine": None if nn is None else round(nn, 4),
    }


# -- statistics -----------------------------------------------------------------------------------

def dataset_stats(records: list[dict], rejections: list[dict], vectors: np.ndarray,
                  summary: dict) -> dict:
    by_skill = Counter(r["skill"] for r in records)
    by_sub = Counter(f"{r['skill']}/{r['subcategory']}" for r in records)
    by_transformation = Counter(
        f"{r['skill']}/{meta.get('transformation')}"
        + (" (fell back to the seed)" if meta.get("transformation_fell_back") else "")
        for r in records if (meta := r.get("metadata", {})).get("transformation"))
    splits = Counter(r.get("metadata", {}).get("split", r["skill"]) for r in records)
    instructions = [r.get("metadata", {}).get("instruction", "") for r in records]
    lengths = [len(t.split()) for t in instructions]
    responses = [next((m["content"] for m in reversed(to_messages(r))
                       if m["role"] == "assistant"), "") for r in records]
    tokens: Counter = Counter()
    retried: Counter = Counter()
    for usage in [r.get("metadata", {}).get("tokens") for r in records] + [
            r.get("usage") for r in rejections]:
        tokens.update({k: v for k, v in (usage or {}).items() if isinstance(v, int)})
        retried.update((usage or {}).get("retried") or {})
    by_reason: Counter = Counter()
    by_call: Counter = Counter()
    for rej in rejections:
        usage = rej.get("usage") or {}
        by_reason[f"{rej['stage']}: {rej['reason']}"] += usage.get("completion_tokens", 0)
        by_call.update(usage.get("by_stage") or {})
    wasted = sum(by_reason.values())
    total = max(1, tokens.get("completion_tokens", 0))
    return {
        "records": len(records),
        "rejected": len(rejections),
        "acceptance_rate": round(len(records) / max(1, len(records) + len(rejections)), 4),
        "records_by_skill": dict(sorted(by_skill.items())),
        "records_by_split": dict(sorted(splits.items())),
        "records_by_subcategory": dict(sorted(by_sub.items())),
        "records_by_transformation": dict(sorted(by_transformation.items())),
        "rejections_by_reason": dict(Counter(
            f"{r['stage']}: {r['reason']}" for r in rejections).most_common()),
        "tokens": dict(tokens),
        "wasted_completion_tokens": wasted,
        "waste_share": round(wasted / total, 4),
        "waste_by_reason": {k: round(n / total, 4) for k, n in by_reason.most_common() if n},
        "waste_by_call": {k: round(n / total, 4) for k, n in by_call.most_common() if n},
        "retried_by_reason": dict(retried.most_common()),
        "instruction_words": {
            "mean": round(float(np.mean(lengths)), 1) if lengths else 0,
            "median": float(np.median(lengths)) if lengths else 0,
            "max": max(lengths, default=0)},
        "diversity": {"instructions": diversity(instructions, vectors),
                      "responses_distinct_2": round(distinct_n(responses, 2), 4)},
        "spread": {k: {"max_over_fair_share": v["max_over_fair_share"],
                       "subcategories_used": v["subcategories_used"],
                       "subcategories": v["subcategories"]}
                   for k, v in summary.get("skills", {}).items()},
    }


# -- plots ----------------------------------------------------------------------------------------

def plots(folder: Path, stats: dict, records: list[dict], vectors: np.ndarray) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        path = folder / name
        tmp = path.with_suffix(".tmp.png")
        fig.tight_layout()
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)

    def barh(counts: dict, title: str, name: str, xlabel: str) -> None:
        items = sorted(counts.items(), key=lambda kv: kv[1])[-60:] or [("(none)", 0)]
        fig, ax = plt.subplots(figsize=(8, max(2.5, 0.22 * len(items) + 1)))
        ax.barh([k for k, _ in items], [v for _, v in items], color="#4C72B0")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.tick_params(axis="y", labelsize=7)
        save(fig, name)

    barh(stats["records_by_subcategory"], "Records per subcategory", "subcategories.png",
         "records")
    barh(stats["rejections_by_reason"], "Rejections by stage and reason", "rejections.png",
         "items")

    lengths = [len(r.get("metadata", {}).get("instruction", "").split()) for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(lengths or [0], bins=min(30, max(1, len(set(lengths)))), color="#55A868")
    ax.set_title("Instruction length")
    ax.set_xlabel("words")
    ax.set_ylabel("records")
    save(fig, "instruction_length.png")

    fig, ax = plt.subplots(figsize=(6, 5))
    if len(vectors) >= 2:
        centered = vectors - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)  # PCA: no extra dependency
        xy = centered @ vt[:2].T
        skills = [r["skill"] for r in records][: len(xy)]
        for n, skill in enumerate(sorted(set(skills))):
            mask = np.array([s == skill for s in skills])
            ax.scatter(xy[mask, 0], xy[mask, 1], s=10, label=skill, color=f"C{n % 10}")
        ax.legend(fontsize=7, markerscale=1.5)
    ax.set_title("Instruction embeddings (PCA), by skill")
    save(fig, "embeddings.png")
    return written


# -- the card -------------------------------------------------------------------------------------

def card(stats: dict, summary: dict, run_info: dict) -> str:
    splits = stats["records_by_split"]
    yaml = ["---",
            "license: # the data's license is yours to choose (check your corpus and teacher)",
            "language:", "- en",
            "task_categories:", "- text-generation", "- question-answering",
            "tags:", "- synthetic", "- agentinstruct",
            "configs:", "- config_name: default", "  data_files:",
            "  - split: train", "    path: data.jsonl",
            "size_categories:", f"- {_size_category(stats['records'])}",
            "---", ""]
    div = stats["diversity"]["instructions"]
    lines = [
        "# Synthetic instruction data (AgentInstruct flows)", "",
        f"{stats['records']} instruction/response records generated offline from a local corpus "
        "by content transformation → seed instruction generation → suggester/editor refinement "
        "→ teacher responses, kept only when they passed the skill's validators and the exact "
        "and embedding near-duplicate gates.", "",
        "## Generation", "",
        f"- teacher: `{run_info.get('teacher')}`"
        + (f" (sha256 `{run_info['teacher_sha256'][:16]}…`)" if run_info.get("teacher_sha256")
           else ""),
        f"- embedder: `{run_info.get('embedder')}`",
        f"- skills: {summary.get('skill')}; seed {summary.get('seed')}; "
        f"format {run_info.get('format')}",
        f"- input: `{summary.get('input')}` ({summary.get('corpus_chunks')} chunks)",
        f"- flags: `{run_info.get('flags')}`", "",
        "## Records", "",
        "| split | records |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in splits.items()], "",
        "| skill/subcategory | records |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in stats["records_by_subcategory"].items()], "",
        "| skill/content transformation | records |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in stats["records_by_transformation"].items()], "",
        "## Rejections", "",
        f"{stats['rejected']} items rejected (acceptance {stats['acceptance_rate']:.1%}); "
        f"{stats['waste_share']:.1%} of completion tokens went into rejected items.", "",
        "| stage: reason | items | share of all completion tokens |", "|---|---|---|",
        *[f"| {k} | {v} | {stats['waste_by_reason'].get(k, 0):.1%} |"
          for k, v in list(stats["rejections_by_reason"].items())[:25]], "",
        "Wasted tokens by the call that generated them: " + (", ".join(
            f"{k} {v:.1%}" for k, v in stats["waste_by_call"].items()) or "none") + ".", "",
        "Replies asked again instead of ending their item (a cheap check or a validator "
        "faulted them): " + (", ".join(f"{k} ×{v}" for k, v in list(
            stats["retried_by_reason"].items())[:10]) or "none") + ".", "",
        "## Token usage", "",
        *[f"- {k}: {v}" for k, v in sorted(stats["tokens"].items())], "",
        "## Diversity", "",
        f"- Vendi score (instruction embeddings, {div['vendi_sample']} items): "
        f"{div['vendi_score']}",
        f"- distinct-1 / distinct-2 (instructions): {div['distinct_1']} / {div['distinct_2']}",
        f"- mean nearest-neighbour cosine: {div['mean_nearest_neighbour_cosine']}",
        f"- distinct-2 (responses): {stats['diversity']['responses_distinct_2']}", "",
        "Plots: `plots/subcategories.png`, `plots/rejections.png`, "
        "`plots/instruction_length.png`, `plots/embeddings.png`; all figures in `stats.json`.",
        "", "## Layout", "",
        "`data.jsonl`: one record per line with `messages` (or the chosen format's fields) and "
        "`metadata` (skill, subcategory, transformation, refinement history, source chunk, "
        "validator scores, tokens). `rejected.jsonl`: every item not kept, with stage and "
        "reason. `python -m engine export OUT --to parquet,hf` writes one split per skill.", ""]
    return "\n".join(yaml + lines)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def write_report(out: Path, records: list[dict], rejections: list[dict], vectors: np.ndarray,
                 summary: dict, run_info: dict) -> dict:
    stats = dataset_stats(records, rejections, vectors, summary)
    _atomic(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    plots(out / "plots", stats, records, vectors)
    _atomic(out / "README.md", card(stats, summary, run_info))
    return stats


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
