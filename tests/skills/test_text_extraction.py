"""Text extraction: hand-written validator cases (and the shared grounding helpers), and the flow
with a scripted teacher over real files."""

import json
import re

import pytest

from agents.text_extraction.grounding import is_placeholder, normalize, numbers, occurs
from agents.text_extraction.skill import (
    ExtractionTask, FieldSpec, answer_model, answer_shape, check_exact_fields, check_field_specs,
    check_not_empty, check_shapes, check_values_in_text, extracted, plain)
from tests.skill_harness import run_skill, skill_teacher

TEXT = ("Mount Etna in Sicily rises about 3,357 metres and is one of the most active volcanoes. "
        "The 1815 eruption of Mount Tambora in Indonesia caused the year without a summer. "
        "Arabica makes up about 60% of world production.")

FIELDS = [FieldSpec(name="volcanoes", description="names of the volcanoes", kind="list"),
          FieldSpec(name="height_m", description="height of Mount Etna in metres", kind="number"),
          FieldSpec(name="eruption_year", description="year Tambora erupted", kind="date"),
          FieldSpec(name="located_in", description="volcano and the place it lies in",
                    kind="pairs")]
GOOD = {"volcanoes": ["Mount Etna", "Mount Tambora"], "height_m": 3357.0,
        "eruption_year": "1815", "located_in": [["Mount Etna", "Sicily"],
                                                ["Mount Tambora", "Indonesia"]]}


# -- grounding helpers --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["3357", "3,357 metres", 3357.0, "MOUNT   etna", "60 percent",
                                   "Mount Tambora, Indonesia", "the year without a summer"])
def test_values_written_in_the_text_occur(value):
    assert occurs(value, TEXT)


@pytest.mark.parametrize("value", ["18", "Mount Fuji", "3,358", "...", "", "the", "Etna Fuji"])
def test_values_not_written_in_the_text_do_not_occur(value):
    assert not occurs(value, TEXT)


def test_normalize_unifies_number_formats_and_case():
    assert normalize("  1,000.50  Metres ") == "1000.5 metres"
    assert normalize("12 %") == normalize("12 per cent") == "12 percent"
    assert numbers("In 1,815 and 3.0 m, CO2 at 20th") == {"1815", "3", "20"}
    assert is_placeholder("...") and is_placeholder(" N/A ") and not is_placeholder("Etna")


# -- validators ---------------------------------------------------------------------------------

def test_a_usable_schema_passes():
    task = ExtractionTask(instruction="Extract the volcano facts for a database.", fields=FIELDS)
    assert check_field_specs(task, ["pairs"]) is None


@pytest.mark.parametrize("fields, kinds, reason", [
    ([FieldSpec(name="Full Name", description="the name", kind="text")], [],
     "'Full Name' is not a snake_case identifier"),
    ([FieldSpec(name="name", description="...", kind="text")], [], "'name' has no real description"),
    ([FieldSpec(name="name", description="a name", kind="text"),
      FieldSpec(name="name", description="another name", kind="text")], [],
     "duplicate field name 'name'"),
    ([FieldSpec(name="name", description="a name", kind="text")], ["list"],
     "no field of kind list"),
    ([FieldSpec(name="pairs", description="place pairs", kind="pairs"),
      FieldSpec(name="rows", description="name and year", kind="rows")], ["pairs"],
     "more than one pairs or rows field"),
])
def test_broken_schemas_are_caught(fields, kinds, reason):
    task = ExtractionTask(instruction="Extract the facts for a database.", fields=fields)
    assert reason in check_field_specs(task, kinds)


def test_exact_fields():
    names = [f.name for f in FIELDS]
    assert check_exact_fields(GOOD, names) is None
    assert check_exact_fields({k: v for k, v in GOOD.items() if k != "height_m"},
                              names) == "missing field 'height_m'"
    assert check_exact_fields(GOOD | {"notes": ""}, names) == "unexpected field 'notes'"


def test_good_shapes_pass():
    assert check_shapes(GOOD, FIELDS) is None
    assert check_shapes(GOOD | {"height_m": None, "eruption_year": ""}, FIELDS) is None


@pytest.mark.parametrize("change, reason", [
    ({"eruption_year": 1815}, "field 'eruption_year' should be a string"),
    ({"eruption_year": "the summer"}, "date field 'eruption_year' holds no digit"),
    ({"height_m": "3357"}, "field 'height_m' should be a number or null"),
    ({"volcanoes": "Mount Etna"}, "field 'volcanoes' should be a list"),
    ({"volcanoes": ["Mount Etna", "mount  etna"]}, "duplicate item in field 'volcanoes'"),
    ({"located_in": [["Mount Etna", "Sicily", "Italy"]]}, "field 'located_in' has an item that is not a pair"),
    ({"located_in": ["Mount Etna"]}, "field 'located_in' should hold lists"),
])
def test_broken_shapes_are_caught(change, reason):
    assert check_shapes(GOOD | change, FIELDS) == reason


def test_rows_must_share_a_width():
    rows = [FieldSpec(name="rows", description="name and height", kind="rows")]
    assert check_shapes({"rows": [["Mount Etna", "3,357"], ["Mount Tambora", "1815"]]}, rows) is None
    assert check_shapes({"rows": [["Mount Etna", "3,357"], ["Mount Tambora", "1815", "Indonesia"]]},
                        rows) == "rows of field 'rows' differ in width"


def test_values_from_the_text_pass_with_normalisation():
    assert check_values_in_text(GOOD, TEXT) is None
    assert check_values_in_text({"share": "60 percent", "volcano": "mount etna"}, TEXT) is None
    assert check_values_in_text({"missing": "", "none": None, "empty": []}, TEXT) is None


@pytest.mark.parametrize("values, reason", [
    ({"volcanoes": ["Mount Etna", "Mount Fuji"]},
     "value 'Mount Fuji' of field 'volcanoes' does not occur in the text"),
    ({"height_m": 3358.0}, "value '3358' of field 'height_m' does not occur in the text"),
    ({"located_in": [["Mount Etna", "Italy"]]},
     "value 'Italy' of field 'located_in' does not occur in the text"),
    ({"name": "..."}, "field 'name' holds a placeholder '...'"),
])
def test_invented_values_are_caught(values, reason):
    assert check_values_in_text(values, TEXT) == reason


def test_numbers_are_rendered_as_the_text_writes_them():
    assert plain({"a": 3357.0, "b": [[2.5, "x"]], "c": None}) == {"a": 3357, "b": [[2.5, "x"]],
                                                                   "c": None}


def test_something_must_be_found():
    assert check_not_empty({"a": "", "b": ["Etna"]}) is None
    assert check_not_empty({"a": 0.0}) is None
    assert check_not_empty({"a": "", "b": [], "c": None, "d": "  "}) == "every field is empty"


def test_answer_schema_requires_exactly_the_fields_and_parsing_leaves_mistakes_to_validators():
    model = answer_model(FIELDS)
    schema = model.model_json_schema()
    assert schema["required"] == [f.name for f in FIELDS]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["located_in"]["items"]["minItems"] == 2
    assert schema["properties"]["height_m"]["anyOf"][0]["type"] == "number"
    answer = model.model_validate_json(json.dumps({"volcanoes": ["Mount Etna"], "extra": "x"}))
    values = extracted(answer, FIELDS)
    assert values == {"volcanoes": ["Mount Etna"], "extra": "x"}
    assert json.loads(answer.model_dump_json())["volcanoes"] == ["Mount Etna"]  # raw, by name
    assert check_exact_fields(values, [f.name for f in FIELDS]) == "missing field 'height_m'"
    assert answer_shape(FIELDS[:2]) == '{"volcanoes": ["..."], "height_m": 0}'


# -- the flow -----------------------------------------------------------------------------------

NAMES = re.compile(r"\b[A-Z][a-z]{3,}\b")
FIGURES = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")


def _value(kind: str, text: str):
    names = list(dict.fromkeys(NAMES.findall(text)))
    figures = FIGURES.findall(text)
    return {"text": names[0], "date": figures[0], "number": float(figures[0].replace(",", "")),
            "list": names[:2], "pairs": [names[:2]], "rows": [names[:2], names[2:4]]}[kind]


def test_flow_extracts_grounded_json_and_rejects_invented_or_missing_values(corpus, tmp_path):
    def reply(prompt, schema):
        props = schema.get("properties", {})
        if set(props) == {"text"}:  # transformations: the passage, unchanged
            return {"text": prompt.split("Passage:\n", 1)[1].rsplit("\n\nReply", 1)[0][:1500]}
        if "fields" in props:  # the writer (instruct and edit): one field of the required kind
            kind = re.search(r'kind (\w+)', prompt)
            kind = kind.group(1) if kind else json.loads(
                prompt.split("Task (JSON):\n", 1)[1].split("\n", 1)[0])["fields"][0]["kind"]
            subject = " and ".join(NAMES.findall(prompt.split('"""')[1])[:2])
            return {"instruction": f"Extract details about {subject} for a database.",
                    "fields": [{"name": "main_value", "description": f"the first {kind} stated",
                                "kind": kind},
                               {"name": "first_name", "description": "the first capitalised name",
                                "kind": "text"}]}
        if schema.get("required") and "main_value" in schema["required"]:  # the teacher
            text = prompt.split('"""')[1]
            kind = re.search(r"- main_value \((\w+)\)", prompt).group(1)
            reply.calls += 1
            if reply.calls == 1:  # invents a value
                return {"main_value": _value(kind, text), "first_name": "Atlantis"}
            if reply.calls == 2:  # drops a field (only an unconstrained backend would)
                return {"main_value": _value(kind, text)}
            return {"main_value": _value(kind, text), "first_name": _value("text", text)}
        return None
    reply.calls = 0

    summary, data, rejected = run_skill("text_extraction", corpus, tmp_path / "out",
                                        skill_teacher(reply), num=2, flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 2
    kinds_by_type = {"entities": "list", "fields": "text", "relations": "pairs",
                     "table_rows": "rows", "dates_quantities": "number", "key_terms": "list"}
    for rec in data:
        meta = rec["metadata"]
        assert meta["split"] == "text_extraction"
        assert meta["instruction_type"] in kinds_by_type
        assert [f["name"] for f in meta["schema"]] == ["main_value", "first_name"]
        assert meta["schema"][0]["kind"] == kinds_by_type[meta["instruction_type"]]
        assert meta["refinement_rounds"] == 1
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        user = rec["messages"][1]["content"]
        assert '"main_value"' in user and '"first_name"' in user and 'Text:\n"""' in user
        answer = json.loads(rec["messages"][2]["content"])
        assert set(answer) == {"main_value", "first_name"} and answer == meta["extraction"]
        if meta["schema"][0]["kind"] == "number":  # written as the text writes it: 1825, not 1825.0
            assert isinstance(answer["main_value"], int)
        assert meta["validator_scores"]["values_in_text"] == 1.0
    reasons = [r["reason"] for r in rejected]
    assert "value 'Atlantis' of field 'first_name' does not occur in the text" in reasons
    assert "missing field 'first_name'" in reasons
