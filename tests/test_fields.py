"""A line's JSON-schema pattern, read as llama.cpp reads it: over the raw characters between the
reply's quotes (escapes as written), the whole of the string's grammar."""

import json
import re

import pytest
from pydantic import ValidationError, create_model

from agents.fields import QUESTION_FLOOR, line_field, line_pattern
from agents.flow import Question, Suggestions
from agents.mcq.skill import Mcq
from agents.reading_comprehension.skill import RcChoice
from agents.task import Task


def body(value: str) -> str:
    """What the decoder writes between a JSON string's quotes for this value."""
    return json.dumps(value)[1:-1]


def matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, body(value)) is not None


def test_a_line_may_not_end_where_a_bare_quote_would_have_cut_it():
    pattern = line_pattern(12, 300)
    # the cut that a bare quote makes: 'What is the purpose of the "equivs-build" command?'
    assert not matches(pattern, "What is the purpose of the ")
    assert matches(pattern, "What is the purpose of the equivs-build command?")
    assert matches(pattern, "What is the purpose of the 'equivs-build' command?")
    # a quote the teacher escapes is kept, and counts as one character
    assert matches(pattern, 'What does "ls" do?')
    assert matches(line_pattern(3, 3), '"a"')


def test_a_line_holds_its_lengths_and_json_string_characters_only():
    pattern = line_pattern(12, 20)
    assert not matches(pattern, "Too short?")  # 10
    assert matches(pattern, "Twelve char?")  # 12
    assert matches(pattern, "x" * 19 + "?")  # 20
    assert not matches(pattern, "x" * 20 + "?")  # 21
    assert not matches(pattern, "two\nlines here?")  # escapes other than a quote: not a line
    # a raw quote or control character is never JSON inside a string: the pattern admits none
    assert not re.fullmatch(pattern, 'What is "ls" there?')
    assert not re.fullmatch(pattern, "What is\tit there?")
    assert matches(line_pattern(1, 5), "a")


def test_the_pattern_is_in_the_schema_only_and_the_parser_keeps_its_bounds():
    schema = Question.model_json_schema()["properties"]["question"]
    assert schema["minLength"] == QUESTION_FLOOR
    assert schema["pattern"] == line_pattern(QUESTION_FLOOR, 300)
    # a backend that ignores schemas: the parser takes what its lengths allow, spaces and all
    assert Question(question="What is it for? ").question == "What is it for? "
    with pytest.raises(ValidationError):
        Question(question="Too short")
    Line = create_model("Line", text=(str, line_field(5, 9, floor=7)))
    assert Line.model_json_schema()["properties"]["text"]["minLength"] == 7
    assert Line(text="five ").text == "five "  # the floor and the pattern are the schema's only
    with pytest.raises(ValidationError):
        Line(text="ten chars!")


@pytest.mark.parametrize("schema, path", [
    (Mcq.model_json_schema(), ("question",)),
    (Mcq.model_json_schema(), ("options", "items")),
    (RcChoice.model_json_schema(), ("question",)),
    (RcChoice.model_json_schema(), ("options", "items")),
    (Task.model_json_schema(), ("instruction",)),
    (Suggestions.model_json_schema(), ("suggestions", "items")),
])
def test_the_lines_teachers_write_carry_the_pattern(schema, path):
    node = schema["properties"]
    for key in path:
        node = node[key]
    assert not re.fullmatch(node["pattern"], body("Which of the following best explains the "))
    assert re.fullmatch(node["pattern"], body("Which of the following best explains the rule?"))
