"""Tool-use data: the API list the transformation derives, and the reply shapes built from it
(API names and parameters become enums and typed fields, so constrained decoding can only name
listed APIs and pass their parameters; the validators check all of it again anyway)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from agents.fields import line_field
from agents.spec import Subcategory

ParamType = Literal["string", "integer", "number", "boolean", "array"]
Short = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class ApiParam(BaseModel):
    name: str = Field(min_length=1, max_length=24)
    type: ParamType
    required: bool


class Api(BaseModel):
    name: str = Field(min_length=2, max_length=32)
    description: str = Field(min_length=5, max_length=80)
    parameters: list[ApiParam] = Field(max_length=3)


class ApiList(BaseModel):
    """What a transformation agent derives from the seed (kept small: one reply must hold it)."""

    apis: list[Api] = Field(min_length=2, max_length=3)


DEFINITION = re.compile(r"\b(?:def|function|func|fn)\s+([A-Za-z][A-Za-z0-9_]*)\s*\(")


def seed_functions(text: str) -> list[str]:
    """Public function names the seed defines (Python, JavaScript, Go, Rust definitions)."""
    return list(dict.fromkeys(DEFINITION.findall(text)))


def _split_top(text: str) -> list[str]:
    """Split a parameter list at commas outside brackets (annotations hold commas too)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{<"
        depth -= ch in ")]}>"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def seed_signatures(text: str) -> dict[str, dict[str, bool]]:
    """{function: {parameter: required}} for the definitions whose parameter list is complete
    in the seed; self/cls and */** catch-alls are left out, a default makes a parameter
    optional."""
    out: dict[str, dict[str, bool]] = {}
    for m in DEFINITION.finditer(text):
        depth, end = 1, m.end()
        while end < len(text) and depth:
            depth += (text[end] == "(") - (text[end] == ")")
            end += 1
        if depth:
            continue  # the chunk cuts the signature off
        params: dict[str, bool] = {}
        for part in _split_top(text[m.end():end - 1]):
            part = part.strip()
            if not part or part.startswith("*") or part in ("/",):
                continue
            name = re.match(r"(?:&?mut\s+)?([A-Za-z_][A-Za-z0-9_]*)", part)
            if name and name.group(1) not in ("self", "cls"):
                params[name.group(1)] = "=" not in part
        out.setdefault(m.group(1), params)
    return out


def api_list_model(names: list[str]) -> type[ApiList]:
    """An ApiList whose API names can only be the given ones: a small teacher otherwise writes
    sentences where names belong."""
    api = create_model("Api", __base__=Api, name=(Literal[tuple(names)], ...))  # type: ignore
    return create_model("ApiList", __base__=ApiList,
                        apis=(list[api], Field(min_length=2, max_length=3)))  # type: ignore


class ToolResponse(BaseModel):
    result: str = Field(min_length=2, max_length=300)


class FinalAnswer(BaseModel):
    answer: str = Field(min_length=10, max_length=500)


def api_functions(apis: ApiList) -> list[dict[str, Any]]:
    """The list in the usual function-calling form (what the record's system message shows)."""
    def schema(kind: str) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}} if kind == "array" else {"type": kind}
    return [{"name": a.name, "description": a.description,
             "parameters": {"type": "object",
                            "properties": {p.name: schema(p.type) for p in a.parameters},
                            "required": [p.name for p in a.parameters if p.required]}}
            for a in apis.apis]


def api_lines(apis: ApiList) -> str:
    """One line per API, for the teacher's prompts: name(param: type, optional p: type): what."""
    def param(p: ApiParam) -> str:
        return f"{'' if p.required else 'optional '}{p.name}: {p.type}"
    return "\n".join(f"- {a.name}({', '.join(param(p) for p in a.parameters)}): {a.description}"
                     for a in apis.apis)


def api_names(apis: ApiList) -> Any:
    return Literal[tuple(a.name for a in apis.apis)]  # type: ignore[valid-type]


def task_model(sub: Subcategory, apis: ApiList) -> type[BaseModel]:
    """The writer's task: which APIs the request needs (first, so the request is written to
    them), what the type adds (extra details, omitted required parameters, an absent
    capability), then the request itself."""
    lo, hi = sub.params.get("apis", [1, 1])
    fields: dict[str, Any] = {}
    if hi > 0:
        fields["apis"] = (list[api_names(apis)], Field(min_length=lo, max_length=hi))
    if sub.expects == "call_extra":
        fields["extra"] = (list[Short], Field(min_length=1, max_length=2))
    if sub.expects == "ask":
        required = tuple(dict.fromkeys(p.name for a in apis.apis for p in a.parameters
                                       if p.required))
        fields["omitted"] = (list[Literal[required]],  # type: ignore[valid-type]
                             Field(min_length=1, max_length=2))
    if sub.expects == "decline":
        fields["absent"] = (str, Field(min_length=3, max_length=80))
    fields["request"] = (str, line_field(20, 400))
    return create_model("ToolTask", **fields)


_PY: dict[str, Any] = {
    "string": Annotated[str, StringConstraints(min_length=1, max_length=80)],
    "integer": int, "number": float, "boolean": bool,
    "array": Annotated[list[Short], Field(max_length=4)]}


def reply_model(apis: ApiList) -> type[BaseModel]:
    """The assistant's move: calls (each one API with its own typed arguments) and a message to
    the user. The same shape for every type, so the teacher decides blind whether to call, ask or
    decline; the validators then compare with what the task's writer meant."""
    calls = []
    for i, api in enumerate(apis.apis):
        # parameters become fields p0.. with the real name as alias: a parameter may be called
        # `json` or `copy` and would shadow BaseModel's attributes
        args = {f"p{j}": ((_PY[p.type], Field(alias=p.name)) if p.required else
                          (_PY[p.type] | None, Field(None, alias=p.name)))
                for j, p in enumerate(api.parameters)}
        # additionalProperties false: the grammar offers no argument the API does not take
        arguments = create_model(f"Args{i}", __config__=ConfigDict(extra="forbid"), **args)
        calls.append(create_model(f"Call{i}", api=(Literal[api.name], ...),
                                  arguments=(arguments, ...)))
    return create_model("ToolReply",
                        calls=(list[Union[tuple(calls)]], Field(max_length=3)),  # type: ignore
                        message=(str, Field(max_length=240)))


def reply_calls(reply: BaseModel) -> list[dict[str, Any]]:
    """The reply's calls as plain {"api", "arguments"} dicts (parameters by their real names)."""
    return [{"api": c.api, "arguments": c.arguments.model_dump(by_alias=True, exclude_none=True)}
            for c in reply.calls]  # type: ignore[attr-defined]


def calls_json(calls: list[dict[str, Any]]) -> str:
    return json.dumps([{"name": c["api"], "arguments": c["arguments"]} for c in calls],
                      ensure_ascii=False)
