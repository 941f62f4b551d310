"""Issue check: a 200-record reading-comprehension run spreads over the 43 question types (no
type above 3× its fair share), and the run summary reports the spread."""

import itertools
import json

from tests.conftest import TOPICS, write_corpus
from tests.skill_harness import run_skill, skill_teacher
from tests.skills.test_reading_comprehension import GoodTeacher

MORE = {
    "glaciers.md": "Glaciers cover about 10 percent of the land on Earth. The Lambert Glacier in "
    "Antarctica is roughly 400 kilometres long and drains ice from a basin of 1,000,000 square "
    "kilometres. Glaciers move when ice deforms under its own weight and slides on meltwater.",
    "printing.md": "Johannes Gutenberg built a printing press with movable metal type around 1440 "
    "in Mainz. His Bible of 1455 was printed in about 180 copies. Printing spread to more than 270 "
    "European towns by 1500 and made books far cheaper than hand copying.",
    "octopus.md": "An octopus has three hearts and blue blood that carries oxygen with copper. The "
    "giant Pacific octopus can weigh 50 kilograms and live about 5 years. Octopuses change colour "
    "with cells called chromatophores to hide from predators.",
    "bridges.md": "The Golden Gate Bridge opened in 1937 and its main span is 1,280 metres long. "
    "Suspension bridges hang the deck from cables anchored at both ends. The Akashi Kaikyo Bridge "
    "in Japan, opened in 1998, has a central span of 1,991 metres.",
    "tea.md": "Tea comes from the leaves of Camellia sinensis. Green tea is steamed or pan fired to "
    "stop oxidation, while black tea is fully oxidised. China produces about 3,000,000 tonnes of "
    "tea a year and India about 1,300,000 tonnes.",
    "comets.md": "Halley's Comet returns about every 76 years and was last seen in 1986. A comet's "
    "nucleus is a ball of ice and dust a few kilometres wide. Near the Sun the ice sublimates and "
    "forms a coma and a tail that can stretch 100,000,000 kilometres.",
    "chess.md": "Chess is played on a board of 64 squares by two players with 16 pieces each. The "
    "first official world champion was Wilhelm Steinitz in 1886. A knight moves in an L shape and "
    "is the only piece that can jump over others.",
    "salt.md": "Sea water holds about 35 grams of salt per litre. Salt was so valuable in ancient "
    "Rome that soldiers received an allowance for it. Evaporation ponds in hot climates produce "
    "sea salt, while rock salt is mined from deposits 200 metres underground.",
}


def tolerant(teacher):
    """The scripted teacher knows the identity passages best; where its recipe does not fit a
    transformed passage, it falls back to schema-valid filler (which validators may reject)."""
    counter = itertools.count()

    def reply(prompt, schema):
        try:
            value = teacher(prompt, schema)
        except (ValueError, StopIteration, IndexError, KeyError, AttributeError):
            return None
        if value and "question" in value and "Fill in the blank" not in value["question"]:
            # the recipe writes one question per passage and type: number them so a long run
            # has more than one distinct question per (chunk, type) to keep
            q = value["question"]
            end = "?" if q.endswith("?") else ""
            value["question"] = f"{q.removesuffix('?')} (case {next(counter)}){end}"
        return value
    return reply


def test_reading_comprehension_run_spreads_over_the_taxonomy(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", TOPICS | MORE)
    summary, data, rejected = run_skill(
        "reading_comprehension", corpus, tmp_path / "out",
        skill_teacher(tolerant(GoodTeacher()), slots=4),
        num=200, max_attempts=2000, near_dup_threshold=1.0, flow={"refine_rounds": 0})
    assert summary["complete"], summary["this_run"]["rejected_by_reason"]
    spread = summary["skills"]["reading_comprehension"]
    counts = spread["by_subcategory"]
    assert len(counts) == 43 and sum(counts.values()) == 200
    fair = 200 / 43
    assert max(counts.values()) <= 3 * fair, counts
    assert spread["max_over_fair_share"] == round(max(counts.values()) / fair, 2)
    assert spread["subcategories_used"] >= 40
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["spread"]["reading_comprehension"]["max_over_fair_share"] <= 3
