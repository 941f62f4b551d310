"""Web-agent data: the page the transformation builds from the seed (an accessibility-tree-like
list of elements; ids are given by position, never by the teacher), the task, and the actions."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from agents.fields import line_field

Role = Literal["link", "button", "textbox", "heading", "text", "checkbox", "combobox"]
ActionKind = Literal["click", "type", "select", "scroll", "answer"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=60)]
Option = Annotated[str, StringConstraints(min_length=1, max_length=24)]


class PlainElement(BaseModel):
    role: Literal["link", "button", "textbox", "heading", "text", "checkbox"]
    name: Name


class ComboElement(BaseModel):
    role: Literal["combobox"]
    name: Name
    options: list[Option] = Field(min_length=2, max_length=4)


class PageDraft(BaseModel):
    """What a transformation agent writes (kept small: one reply must hold it)."""

    title: str = Field(min_length=3, max_length=60)
    elements: list[PlainElement | ComboElement] = Field(min_length=4, max_length=10)


class Element(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    role: Role
    name: str
    options: list[str] = Field(default_factory=list)


class Page(BaseModel):
    model_config = ConfigDict(frozen=True)
    title: str
    elements: list[Element]

    def get(self, id_: int) -> Element | None:
        return next((e for e in self.elements if e.id == id_), None)

    def text(self) -> str:
        """Everything a reader can see on the page."""
        return "\n".join([self.title] + [" ".join([e.name, *e.options]) for e in self.elements])


def build_page(draft: PageDraft) -> Page:
    return Page(title=" ".join(draft.title.split()), elements=[
        Element(id=i, role=e.role, name=" ".join(e.name.split()),
                options=[" ".join(o.split()) for o in getattr(e, "options", [])])
        for i, e in enumerate(draft.elements, start=1)])


def render_element(e: Element) -> str:
    line = f"[{e.id}] {e.role} {json.dumps(e.name, ensure_ascii=False)}"
    if e.options:
        line += " (options: " + ", ".join(e.options) + ")"
    return line


def render_page(page: Page) -> str:
    return "\n".join([f"Page: {page.title}"] + [render_element(e) for e in page.elements])


class WebTask(BaseModel):
    goal: str = line_field(15, 300)


class Action(BaseModel):
    action: ActionKind
    element: int
    text: str = Field(max_length=100)


class Actions(BaseModel):
    actions: list[Action] = Field(min_length=1, max_length=6)


def actions_model(n_elements: int) -> type[BaseModel]:
    """Actions whose element ids can only be ids of this page."""
    action = create_model("Action", __base__=Action,
                          element=(int, Field(ge=1, le=n_elements)))
    return create_model("Actions", __base__=Actions,
                        actions=(list[action], Field(min_length=1, max_length=6)))


def describe(a: Action, page: Page) -> str:
    """One action in words, for the record's assistant turn."""
    e = page.get(a.element)
    where = render_element(e).split(" (options")[0] if e else f"[{a.element}]"
    text = json.dumps(a.text.strip(), ensure_ascii=False)
    return {"click": f"Click {where}.", "type": f"Type {text} into {where}.",
            "select": f"Select {text} in {where}.", "scroll": f"Scroll to {where}.",
            "answer": f"Answer: {a.text.strip()}"}[a.action]


def actions_json(actions: list[Action]) -> str:
    def one(a: Action) -> dict[str, Any]:
        return {"action": a.action, "element": a.element,
                **({"text": a.text.strip()} if a.action in ("type", "select", "answer") else {})}
    return json.dumps({"actions": [one(a) for a in actions]}, ensure_ascii=False)
