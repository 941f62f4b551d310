"""Shared pieces for the retrieval tests (no tests here).

The real embedder takes seconds to load on a small machine, so every retrieval test module
shares one instance through `shared_embedder()`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from retrieval.embedder import Embedder

# Six documents on clearly distinct topics, so "which doc answers this query" is unambiguous.
TOPIC_DOCS: dict[str, str] = {
    "baking.md": (
        "# Sourdough baking\n\n"
        "A sourdough starter is a culture of wild yeast and lactic acid bacteria. Feed the "
        "starter with equal weights of flour and water every day, and bake when it doubles "
        "in size. Long fermentation gives the bread its sour taste and open crumb."
    ),
    "volcanoes.txt": (
        "Volcanoes form where magma rises through the crust. Basaltic lava is runny and "
        "builds shield volcanoes such as Mauna Loa, while viscous andesitic magma traps gas "
        "and erupts explosively, throwing ash and pyroclastic flows down the slopes."
    ),
    "chess/openings.md": (
        "The Sicilian Defence answers 1.e4 with 1...c5 and fights for the centre from the "
        "flank. The Queen's Gambit offers a pawn on c4 to pull Black's d-pawn away from the "
        "centre. Opening principles: develop knights and bishops, castle early."
    ),
    "code/asyncio_notes.py": (
        '"""Notes on Python asyncio."""\n\n'
        "import asyncio\n\n\n"
        "async def fetch_all(urls):\n"
        "    # gather runs the coroutines concurrently on one event loop thread\n"
        "    return await asyncio.gather(*(fetch(u) for u in urls))\n"
    ),
    "bees.html": (
        "<html><head><title>Honeybee colonies</title></head><body>"
        "<nav>Home | Shop | Contact</nav>"
        "<p>A honeybee colony has one queen, thousands of female worker bees and a few "
        "male drones. Workers forage for nectar and pollen and perform the waggle dance to "
        "tell their sisters where the flowers are.</p></body></html>"
    ),
    "tides.txt": (
        "Ocean tides are caused by the gravitational pull of the Moon and the Sun. Spring "
        "tides with the largest range happen at new and full moon; neap tides happen at the "
        "quarter moons."
    ),
}


def write_topic_corpus(root: Path) -> Path:
    for rel, text in TOPIC_DOCS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    return root


@functools.cache
def shared_embedder() -> Embedder:
    return Embedder()
