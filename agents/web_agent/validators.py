"""Web-agent validators: plain functions over a `Page`, a goal and `Action`s that return a
rejection reason, or None when the item passes."""

from __future__ import annotations

import re

from agents.rag.validators import (check_adds_information, check_repetition, content_words,
                                   lexical_support)
from agents.web_agent.models import Action, Element, Page

INTERACTIVE = frozenset({"link", "button", "textbox", "checkbox", "combobox"})
# what each action may act on (scroll and answer may point at anything)
ACTS_ON = {"click": frozenset({"link", "button", "checkbox"}), "type": frozenset({"textbox"}),
           "select": frozenset({"combobox"})}
SUBMIT_WORDS = frozenset(
    "submit send search save sign signup register subscribe continue apply book order buy go"
    " confirm login log join post create add request reserve donate find next done ok pay enroll"
    " upload start get finish place checkout calculate convert".split())
# role a type needs on the page, as (roles, reason when missing)
NEEDS = {"link": ({"link"}, "page has no link to navigate"),
         "select": ({"combobox"}, "page has no drop-down (combobox)")}
MIN_SEED_SUPPORT = 0.5
MIN_ANSWER_SUPPORT = 0.6


def _words(text: str) -> set[str]:
    return content_words(text) | set(re.findall(r"\d+", text))


def is_submit(e: Element) -> bool:
    return e.role == "button" and bool(_words(e.name.lower()) & SUBMIT_WORDS)


# -- the page ------------------------------------------------------------------------------

def check_page(page: Page, expects: str) -> str | None:
    """No element twice, sound drop-downs, and what the task type needs is on the page."""
    seen: set[tuple[str, str]] = set()
    for e in page.elements:
        key = (e.role, e.name.lower())
        if key in seen:
            return f"{e.role} {e.name!r} appears twice on the page"
        seen.add(key)
        if not _words(e.name) and e.role != "checkbox":
            return f"element {e.id} ({e.role}) has no name"
        if any(not _words(o) for o in e.options):
            return f"combobox {e.name!r} has an option without words"
        if len({o.lower() for o in e.options}) < len(e.options):
            return f"combobox {e.name!r} lists an option twice"
    roles = {e.role for e in page.elements}
    if expects in NEEDS and not NEEDS[expects][0] & roles:
        return NEEDS[expects][1]
    if expects == "answer" and not any(e.role == "text" and len(content_words(e.name)) >= 3
                                       for e in page.elements):
        return "page has no text to find information in"
    if expects == "form":
        if "textbox" not in roles:
            return "page has no textbox to fill"
        if not any(is_submit(e) for e in page.elements):
            return "page has no submit button"
    if expects == "multi" and sum(e.role in INTERACTIVE for e in page.elements) < 2:
        return "page has fewer than two interactive elements"
    return None


def check_page_grounded(page: Page, seed: str) -> str | None:
    """The page's headings and text come from the seed, not from the teacher's imagination."""
    prose = " ".join(e.name for e in page.elements if e.role in ("heading", "text"))
    if not content_words(prose):
        return "page has no heading or text"
    if lexical_support(prose, [seed]) < MIN_SEED_SUPPORT:
        return "page text is not from the seed"
    return None


# -- the task ------------------------------------------------------------------------------

def check_goal(goal: str, page: Page, expects: str) -> str | None:
    if len(goal.split()) < 4:
        return "goal too short"
    if problem := check_repetition(goal):
        return problem
    if not _words(goal) & _words(page.text()):
        return "goal mentions nothing on the page"
    if expects == "link" and not any(e.role == "link" and _words(e.name) & _words(goal)
                                     for e in page.elements):
        return "goal names no link on the page"
    if expects == "select" and not any(_words(o) & _words(goal) for e in page.elements
                                       for o in e.options):
        return "goal names no option of a drop-down"
    return None


# -- the actions ---------------------------------------------------------------------------

def check_ids(actions: list[Action], page: Page) -> str | None:
    for i, a in enumerate(actions, start=1):
        if page.get(a.element) is None:
            return (f"action {i} uses element {a.element}, the page has elements 1-"
                    f"{len(page.elements)}")
    return None


def check_roles(actions: list[Action], page: Page) -> str | None:
    """Each action fits its element: type into textboxes, select an existing option of a
    combobox, click links, buttons and checkboxes; typed, selected and answered text is given."""
    for i, a in enumerate(actions, start=1):
        e = page.get(a.element)
        if e is None:
            continue
        if a.action in ACTS_ON and e.role not in ACTS_ON[a.action]:
            return (f"action {i} can't {a.action} element {e.id}, a {e.role} "
                    f"({a.action} needs {' or '.join(sorted(ACTS_ON[a.action]))})")
        if a.action in ("type", "select", "answer") and not a.text.strip():
            return f"{a.action} action {i} has no text"
        if a.action == "select" and a.text.strip().lower() not in {o.lower() for o in e.options}:
            return f"action {i} selects {a.text.strip()!r}, not an option of element {e.id}"
    return None


def check_sequence(actions: list[Action]) -> str | None:
    for i, (a, b) in enumerate(zip(actions, actions[1:]), start=2):
        if (a.action, a.element, a.text.strip()) == (b.action, b.element, b.text.strip()):
            return f"action {i} repeats action {i - 1}"
    if any(a.action == "answer" for a in actions[:-1]):
        return "answer must be the last action"
    return None


def check_values_from_goal(actions: list[Action], goal: str) -> str | None:
    """What the agent types or selects is what the user asked for, not invented."""
    said = _words(goal)
    for i, a in enumerate(actions, start=1):
        if a.action in ("type", "select"):
            words = _words(a.text)
            if not words or len(words & said) * 2 < len(words):
                return f"action {i} {a.action}s {a.text.strip()!r}, which the goal does not give"
    return None


def check_navigate(actions: list[Action], page: Page, goal: str) -> str | None:
    last = page.get(actions[-1].element)
    if actions[-1].action != "click" or last is None or last.role != "link":
        return "navigation does not end by clicking a link"
    if not _words(last.name) & _words(goal):
        return f"the clicked link {last.name!r} is not the one the goal asks for"
    return None


def answer_support(actions: list[Action], page: Page) -> float:
    """Share of the final answer's content words that occur on the page."""
    return lexical_support(actions[-1].text, [page.text()]) if actions else 0.0


def check_find_information(actions: list[Action], page: Page, goal: str) -> str | None:
    """Ends with an answer read off the page, which is not a restatement of the goal."""
    if actions[-1].action != "answer":
        return "does not end with an answer"
    answer = actions[-1].text
    if not content_words(answer) and not re.search(r"\d", answer):
        return "answer is empty of content"
    if answer_support(actions, page) < MIN_ANSWER_SUPPORT:
        return "answer words are not on the page"
    return check_adds_information(goal, answer)


def check_fill_form(actions: list[Action], page: Page) -> str | None:
    if not any(a.action == "type" and (e := page.get(a.element)) and e.role == "textbox"
               for a in actions):
        return "fills no textbox"
    last = page.get(actions[-1].element)
    if actions[-1].action != "click" or last is None or not is_submit(last):
        return "form is not submitted: the last action is not a click on a submit button"
    return None


def check_select(actions: list[Action]) -> str | None:
    if not any(a.action == "select" for a in actions):
        return "selects no option"
    return None


def check_multi_step(actions: list[Action]) -> str | None:
    if len(actions) < 2:
        return "a multi-step task needs two or more actions"
    if len({a.element for a in actions}) < 2:
        return "a multi-step task uses only one element"
    return None
