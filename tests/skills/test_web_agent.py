"""Web agent: hand-written validator cases over a small page, and the flow with a scripted
teacher over real files."""

import json

import pytest

from agents.web_agent import validators as v
from agents.web_agent.models import (Action, ComboElement, PageDraft, PlainElement, actions_json,
                                     actions_model, build_page, describe, render_page)
from tests.skill_harness import run_skill, skill_teacher

SEED = ("Honey bees live in colonies of 20,000 to 80,000 workers with a single queen. Worker bees "
        "perform a waggle dance to tell other foragers the direction and distance of flowers.")


def page_of(*elements) -> PageDraft:
    return PageDraft(title="Honey bees", elements=list(elements))


PAGE = build_page(page_of(
    PlainElement(role="heading", name="Honey bees"),
    PlainElement(role="text", name="Honey bees live in colonies with a single queen."),
    PlainElement(role="link", name="Waggle dance"),
    PlainElement(role="textbox", name="Your name"),
    ComboElement(role="combobox", name="Hive size", options=["Small", "Large"]),
    PlainElement(role="checkbox", name="Send me news"),
    PlainElement(role="button", name="Submit"),
    PlainElement(role="button", name="Cancel"),
))


def act(action: str, element: int, text: str = "") -> Action:
    return Action(action=action, element=element, text=text)


# -- the page -----------------------------------------------------------------------------------

def test_ids_are_positions_and_the_page_renders_as_text():
    assert [e.id for e in PAGE.elements] == list(range(1, 9))
    text = render_page(PAGE)
    assert text.splitlines()[0] == "Page: Honey bees"
    assert '[3] link "Waggle dance"' in text
    assert '[5] combobox "Hive size" (options: Small, Large)' in text


@pytest.mark.parametrize("expects", ["link", "answer", "form", "select", "multi"])
def test_a_full_page_serves_every_task_type(expects):
    assert v.check_page(PAGE, expects) is None


@pytest.mark.parametrize("elements, expects, reason", [
    ([PlainElement(role="link", name="Waggle dance")] * 2, "link", "appears twice"),
    ([ComboElement(role="combobox", name="Size", options=["Small", "small"])], "select",
     "lists an option twice"),
    ([ComboElement(role="combobox", name="Size", options=["...", "..."])], "select",
     "has an option without words"),
    ([PlainElement(role="text", name="...")], "multi", "element 1 (text) has no name"),
    ([PlainElement(role="text", name="Bees live in colonies")], "link",
     "page has no link to navigate"),
    ([PlainElement(role="text", name="Bees")], "answer", "page has no text to find information"),
    ([PlainElement(role="button", name="Submit")], "form", "page has no textbox to fill"),
    ([PlainElement(role="textbox", name="Name"), PlainElement(role="button", name="Cancel")],
     "form", "page has no submit button"),
    ([PlainElement(role="link", name="Home")], "select", "page has no drop-down"),
    ([PlainElement(role="link", name="Home"), PlainElement(role="text", name="Bees swarm")],
     "multi", "fewer than two interactive elements"),
])
def test_pages_missing_what_the_task_needs_are_caught(elements, expects, reason):
    filler = [PlainElement(role="heading", name=f"Heading {i}") for i in range(4 - len(elements))]
    page = build_page(page_of(*elements, *filler))
    assert reason in v.check_page(page, expects)


def test_page_text_must_come_from_the_seed():
    assert v.check_page_grounded(PAGE, SEED) is None
    invented = build_page(page_of(PlainElement(role="heading", name="Cheap flights"),
                                  PlainElement(role="text", name="Book your holiday in Spain"),
                                  PlainElement(role="link", name="Home"),
                                  PlainElement(role="button", name="Go")))
    assert v.check_page_grounded(invented, SEED) == "page text is not from the seed"
    bare = build_page(page_of(*[PlainElement(role="link", name=n) for n in "ABCD"]))
    assert v.check_page_grounded(bare, SEED) == "page has no heading or text"


def test_submit_buttons_are_recognized_by_name():
    assert v.is_submit(PAGE.get(7)) and not v.is_submit(PAGE.get(8))
    assert not v.is_submit(PAGE.get(3))  # a link is not a button


# -- the goal -----------------------------------------------------------------------------------

@pytest.mark.parametrize("goal, expects, reason", [
    ("Open the page about the waggle dance.", "link", None),
    ("Choose the large hive size please.", "select", None),
    ("Open it now", "link", "goal too short"),
    ("Book a cheap flight to Spain for me.", "answer", "goal mentions nothing on the page"),
    ("Tell me about the queen of the colony.", "link", "goal names no link on the page"),
    ("Pick a hive size for my colony please.", "select", "goal names no option of a drop-down"),
])
def test_goals_are_about_the_page(goal, expects, reason):
    assert v.check_goal(goal, PAGE, expects) == reason


# -- the actions --------------------------------------------------------------------------------

def test_every_id_must_exist():
    assert v.check_ids([act("click", 3)], PAGE) is None
    assert v.check_ids([act("click", 3), act("click", 12)], PAGE) == \
        "action 2 uses element 12, the page has elements 1-8"


@pytest.mark.parametrize("action, reason", [
    (act("click", 3), None), (act("click", 6), None), (act("click", 7), None),
    (act("type", 4, "Ann"), None), (act("select", 5, "large"), None),
    (act("scroll", 2), None), (act("answer", 2, "They live in colonies."), None),
    (act("type", 3, "Ann"), "can't type element 3, a link (type needs textbox)"),
    (act("click", 2), "can't click element 2, a text (click needs button or checkbox or link)"),
    (act("click", 5), "can't click element 5, a combobox"),
    (act("select", 4, "Large"), "can't select element 4, a textbox"),
    (act("select", 5, "Huge"), "selects 'Huge', not an option of element 5"),
    (act("type", 4, "  "), "type action 1 has no text"),
    (act("answer", 2, ""), "answer action 1 has no text"),
])
def test_actions_fit_the_roles_of_their_elements(action, reason):
    got = v.check_roles([action], PAGE)
    assert got is None if reason is None else reason in got


def test_sequences_do_not_stutter_and_answer_last():
    assert v.check_sequence([act("type", 4, "Ann"), act("click", 7)]) is None
    assert v.check_sequence([act("click", 3), act("click", 3)]) == "action 2 repeats action 1"
    assert v.check_sequence([act("answer", 2, "Bees."), act("click", 3)]) == \
        "answer must be the last action"


def test_typed_and_selected_values_come_from_the_goal():
    goal = "Sign up as Ann Lee with a large hive."
    assert v.check_values_from_goal([act("type", 4, "Ann Lee"), act("select", 5, "Large"),
                                     act("click", 7)], goal) is None
    assert v.check_values_from_goal([act("type", 4, "Bob Smith")], goal) == \
        "action 1 types 'Bob Smith', which the goal does not give"
    assert "action 1 selects 'Small'" in v.check_values_from_goal([act("select", 5, "Small")],
                                                                  goal)


def test_navigation_ends_on_the_asked_link():
    goal = "Open the page about the waggle dance."
    assert v.check_navigate([act("scroll", 3), act("click", 3)], PAGE, goal) is None
    assert v.check_navigate([act("click", 7)], PAGE, goal) == \
        "navigation does not end by clicking a link"
    assert v.check_navigate([act("click", 3)], PAGE, "Open the page about hives.") == \
        "the clicked link 'Waggle dance' is not the one the goal asks for"


@pytest.mark.parametrize("last, reason", [
    (act("answer", 2, "They live in colonies with a single queen."), None),
    (act("click", 3), "does not end with an answer"),
    (act("answer", 2, "the of"), "answer is empty of content"),
    (act("answer", 2, "They fly south in winter to warm deserts."), "answer words are not on"),
    (act("answer", 2, "Honey bees live."), "answer only restates the question"),
])
def test_found_information_is_read_off_the_page(last, reason):
    goal = "How do honey bees live?"
    got = v.check_find_information([act("scroll", 2), last], PAGE, goal)
    assert got is None if reason is None else reason in got


def test_answer_support_is_measured_on_the_page():
    assert v.answer_support([act("answer", 2, "colonies queen")], PAGE) == 1.0
    assert v.answer_support([act("answer", 2, "colonies deserts")], PAGE) == 0.5


@pytest.mark.parametrize("actions, reason", [
    ([act("type", 4, "Ann"), act("click", 6), act("click", 7)], None),
    ([act("click", 6), act("click", 7)], "fills no textbox"),
    ([act("type", 4, "Ann"), act("click", 8)], "form is not submitted"),
    ([act("click", 7), act("type", 4, "Ann")], "form is not submitted"),
])
def test_forms_are_filled_and_submitted(actions, reason):
    got = v.check_fill_form(actions, PAGE)
    assert got is None if reason is None else reason in got


def test_select_and_multi_step():
    assert v.check_select([act("select", 5, "Large")]) is None
    assert v.check_select([act("click", 6)]) == "selects no option"
    assert v.check_multi_step([act("click", 6), act("click", 3)]) is None
    assert v.check_multi_step([act("click", 3)]) == "a multi-step task needs two or more actions"
    assert v.check_multi_step([act("scroll", 3), act("click", 3)]) == \
        "a multi-step task uses only one element"


def test_actions_schema_allows_only_the_pages_ids_and_renders_readably():
    schema = actions_model(8).model_json_schema()
    element = schema["$defs"]["Action"]["properties"]["element"]
    assert (element["minimum"], element["maximum"]) == (1, 8)
    steps = [act("type", 4, "Ann"), act("select", 5, "Large"), act("click", 7)]
    assert describe(steps[0], PAGE) == 'Type "Ann" into [4] textbox "Your name".'
    assert describe(steps[1], PAGE) == 'Select "Large" in [5] combobox "Hive size".'
    assert json.loads(actions_json(steps))["actions"][2] == {"action": "click", "element": 7}


# -- the flow -----------------------------------------------------------------------------------

def page_reply(prompt: str) -> dict:
    """A page whose heading and text lines are the passage's own words."""
    words = prompt.split('"""')[1].split()
    lines = [" ".join(words[i:i + 7])[:60] for i in (0, 7)]
    return {"title": " ".join(words[:4])[:60], "elements": [
        {"role": "heading", "name": " ".join(words[:4])[:60]},
        {"role": "text", "name": lines[0]}, {"role": "text", "name": lines[1]},
        {"role": "link", "name": "Contact us"}, {"role": "link", "name": "Opening hours"},
        {"role": "textbox", "name": "Your name"},
        {"role": "combobox", "name": "Size", "options": ["Small", "Large"]},
        {"role": "checkbox", "name": "Send me news"}, {"role": "button", "name": "Submit"}]}


GOALS = {"navigate": "Open the opening hours page please.",
         "find information": "What does the site say about",  # + the page's heading
         "fill form": "Sign up with the name Ann Lee and send it.",
         "select option": "Choose the Large size from the list.",
         "multi step": "Tick send me news, then open the contact us page."}
GOOD = {GOALS["navigate"]: [act("click", 5)],
        GOALS["find information"]: [act("scroll", 2), act("answer", 2, "TEXT")],
        GOALS["fill form"]: [act("type", 6, "Ann Lee"), act("click", 9)],
        GOALS["select option"]: [act("select", 7, "Large")],
        GOALS["multi step"]: [act("click", 8), act("click", 4)]}
BAD = {GOALS["navigate"]: [act("click", 9)],
       GOALS["find information"]: [act("answer", 2, "Penguins migrate across frozen oceans")],
       GOALS["fill form"]: [act("type", 6, "Bob Smith"), act("click", 9)],
       GOALS["select option"]: [act("type", 7, "Large")],
       GOALS["multi step"]: [act("click", 8)]}
BAD_REASONS = {"navigate": "navigation does not end by clicking a link",
               "find_information": "answer words are not on the page",
               "fill_form": "action 1 types 'Bob Smith', which the goal does not give",
               "select_option": "action 1 can't type element 7, a combobox (type needs textbox)",
               "multi_step": "a multi-step task needs two or more actions"}


def scripted(moves: dict):
    def reply(prompt: str, schema: dict) -> dict | None:
        if "elements from top to bottom" in prompt:
            return page_reply(prompt)
        if "Write ONE goal" in prompt:
            goal = GOALS[prompt.split('Type "', 1)[1].split('"', 1)[0]]
            if goal == GOALS["find information"]:
                goal += " " + prompt.split('[1] heading "', 1)[1].split('"', 1)[0] + "?"
            return {"goal": goal}
        if "Reach the goal" in prompt:
            goal = prompt.split("Goal: ", 1)[1].split("\n", 1)[0]
            goal = GOALS["find information"] if goal.startswith(GOALS["find information"]) \
                else goal
            first_text = prompt.split('[2] text "', 1)[1].split('"', 1)[0]
            return {"actions": [a.model_copy(update={"text": first_text} if a.text == "TEXT"
                                             else {}).model_dump() for a in moves[goal]]}
        return None
    return reply


def test_flow_writes_page_task_and_actions(corpus, tmp_path):
    # one record per type, never two items of a type in flight (max_type_share 1): otherwise the
    # first 5 to finish (up to 8 are in flight) could repeat a type of the next deck while
    # another was still running (it failed so once in a fresh clone, with nothing rejected)
    summary, data, rejected = run_skill("web_agent", corpus, tmp_path / "out",
                                        skill_teacher(scripted(GOOD)), num=5, max_type_share=1.0,
                                        flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 5, rejected
    by_type = {r["metadata"]["instruction_type"]: r for r in data}
    assert set(by_type) == {"navigate", "find_information", "fill_form", "select_option",
                            "multi_step"}, [(r["subcategory"], r["stage"], r["reason"], r["detail"])
                                            for r in rejected]
    for kind, rec in by_type.items():
        meta, msgs = rec["metadata"], rec["messages"]
        assert meta["split"] == "web_agent" and [m["role"] for m in msgs] == \
            ["system", "user", "assistant"]
        assert [e["id"] for e in meta["page"]["elements"]] == list(range(1, 10))
        assert msgs[1]["content"].startswith(f"Page: {meta['page']['title']}")
        assert '[7] combobox "Size" (options: Small, Large)' in msgs[1]["content"]
        assert f"Goal: {meta['task']['goal']}" in msgs[1]["content"]
        assert meta["instruction"] == f"{meta['page']['title']}: {meta['task']['goal']}"
        block = msgs[2]["content"].split("```json\n", 1)[1].split("\n```", 1)[0]
        assert json.loads(block)["actions"] == [
            {k: val for k, val in a.items() if k != "text" or a["action"] in ("type", "select",
                                                                              "answer")}
            for a in meta["actions"]]
        assert meta["validator_scores"]["actions"] == len(meta["actions"])
    assert by_type["fill_form"]["messages"][2]["content"].startswith(
        '1. Type "Ann Lee" into [6] textbox "Your name".\n2. Click [9] button "Submit".')
    assert by_type["find_information"]["metadata"]["validator_scores"]["answer_support"] == 1.0


def test_flow_rejects_wrong_action_sequences_with_their_reason(corpus, tmp_path):
    summary, data, rejected = run_skill("web_agent", corpus, tmp_path / "out",
                                        skill_teacher(scripted(BAD)), num=1,
                                        flow={"refine_rounds": 0}, max_attempts=10)
    assert data == [] and len(rejected) == 10
    for r in rejected:
        assert r["stage"] == "validate" and r["reason"] == BAD_REASONS[r["subcategory"]]


def test_flow_rejects_a_page_not_made_from_the_seed(corpus, tmp_path):
    def invented(prompt, schema):
        if "elements from top to bottom" in prompt:
            return {"title": "Cheap flights", "elements": [
                {"role": "heading", "name": "Cheap flights"},
                {"role": "text", "name": "Book your holiday in sunny Spain today"},
                {"role": "link", "name": "Deals"}, {"role": "button", "name": "Search"}]}
        return scripted(GOOD)(prompt, schema)
    summary, data, rejected = run_skill("web_agent", corpus, tmp_path / "out",
                                        skill_teacher(invented), num=1,
                                        flow={"refine_rounds": 0}, max_attempts=3)
    assert data == [] and {(r["stage"], r["reason"]) for r in rejected} == {
        ("transform", "page text is not from the seed")}


def test_flow_names_a_pages_repeated_elements_before_its_grounding(corpus, tmp_path):
    def repeated(prompt, schema):
        if "elements from top to bottom" in prompt:
            return {"title": "Cheap flights", "elements": [
                {"role": "textbox", "name": "Cheap flights"}] * 5}
        return scripted(GOOD)(prompt, schema)
    summary, data, rejected = run_skill("web_agent", corpus, tmp_path / "out",
                                        skill_teacher(repeated), num=1,
                                        flow={"refine_rounds": 0}, max_attempts=2)
    assert {(r["stage"], r["reason"]) for r in rejected} == {
        ("transform", "textbox 'Cheap flights' appears twice on the page")}
