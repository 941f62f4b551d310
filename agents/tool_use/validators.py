"""Tool-use validators: plain functions over plain data (an `ApiList`, calls as
{"api": name, "arguments": {...}} dicts, texts) that return a rejection reason or None."""

from __future__ import annotations

import re
from typing import Any

from agents.rag.validators import REFUSAL_CUES, check_repetition, content_words
from agents.tool_use.models import Api, ApiList

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# parameters a small model copies from method definitions; no caller passes them
IMPLICIT_PARAMS = frozenset({"self", "cls", "args", "kwargs"})
CALL_KINDS = ("call", "call_extra")
MAX_NAME_WORDS = 4  # push_task_to_queue is a name; The_task_queue_is_a_priority_que is not


def normalize_name(name: str) -> str:
    """'Push Task' / 'push-task' / 'push_task()' → 'push_task': names become identifiers."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", name.strip()).strip("_")


def name_words(name: str) -> set[str]:
    """push_task / pushTask → {push, task}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ")
    return {w.lower() for w in spaced.split() if len(w) > 1}


def normalize_api_list(apis: ApiList) -> ApiList:
    return ApiList(apis=[api.model_copy(update={
        "name": normalize_name(api.name),
        "parameters": [p.model_copy(update={"name": normalize_name(p.name)})
                       for p in api.parameters]}) for api in apis.apis])


def check_api_list(apis: ApiList) -> str | None:
    """Names are identifiers and unique, each API says what it does, and at least one API has a
    required parameter (otherwise no task can leave one out and every call is trivial)."""
    seen: set[str] = set()
    for api in apis.apis:
        if not IDENTIFIER.match(api.name):
            return f"API name {api.name!r} is not an identifier"
        if len(name_words(api.name)) > MAX_NAME_WORDS:
            return f"API name {api.name!r} is a phrase, not a function name"
        if api.name in seen:
            return f"two APIs are named {api.name}"
        seen.add(api.name)
        if not content_words(api.description) - name_words(api.name):
            return f"API {api.name} has no description beyond its name"
        params = [p.name for p in api.parameters]
        for p in params:
            if not IDENTIFIER.match(p):
                return f"parameter {p!r} of API {api.name} is not an identifier"
            if p.lower() in IMPLICIT_PARAMS:
                return f"API {api.name} lists {p!r} as a parameter"
        if len(set(params)) < len(params):
            return f"API {api.name} lists a parameter twice"
    if not any(p.required for api in apis.apis for p in api.parameters):
        return "no API has a required parameter"
    return None


def check_apis_grounded(apis: ApiList, seed: str, every: bool) -> str | None:
    """APIs taken from the seed must be named in it (all of them for `apis_from_code`; at least
    one for `sibling_apis`, whose other APIs are inferred)."""
    words = content_words(seed) | {w.lower() for w in re.findall(r"[A-Za-z0-9]+", seed)}
    grounded = [api.name for api in apis.apis if name_words(api.name) <= words]
    if every:
        missing = [api.name for api in apis.apis if api.name not in grounded]
        if missing:
            return f"API {missing[0]} does not occur in the seed"
    elif not grounded:
        return "no API in the list comes from the seed"
    return None


def check_params_match_code(apis: ApiList, signatures: dict[str, dict[str, bool]]) -> str | None:
    """An API that is a function of the seed takes that function's parameters, required
    exactly when the code gives them no default."""
    for api in apis.apis:
        code = signatures.get(api.name)
        if code is None:
            continue
        for p in api.parameters:
            if p.name not in code:
                return f"parameter {p.name!r} is not in the code's signature of {api.name}"
            if p.required != code[p.name]:
                return (f"parameter {p.name!r} of {api.name} is "
                        f"{'optional' if p.required else 'required'} in the code")
    return None


def api_by_name(apis: ApiList, name: str) -> Api | None:
    return next((a for a in apis.apis if a.name == name), None)


# -- the task (before anything is spent on answering it) --------------------------------------

def check_request(request: str) -> str | None:
    if re.search(r"[{}\[\]]|[A-Za-z0-9_]\(", request):
        return "request contains JSON or code, not a user's words"
    if len(request.split()) < 5:
        return "request too short"
    return check_repetition(request)


def check_task_apis(names: list[str], apis: ApiList, lo: int) -> str | None:
    unknown = [n for n in names if api_by_name(apis, n) is None]
    if unknown:
        return f"task names API {unknown[0]}, which is not in the list"
    if len(set(names)) < len(names):
        return "task names the same API twice"
    if len(names) < lo:
        return f"task needs {lo} or more different APIs, it names {len(names)}"
    return None


def check_extra(extra: list[str], names: list[str], apis: ApiList, request: str) -> str | None:
    """Extra details must be ones the chosen API has no parameter for, and stated in the request."""
    request_words = content_words(request)
    for item in extra:
        for name in names:
            api = api_by_name(apis, name)
            if api and normalize_name(item).lower() in {p.name.lower() for p in api.parameters}:
                return f"extra detail {item!r} is a parameter of API {name}"
        if not content_words(item.replace("_", " ")) & request_words:
            return f"extra detail {item!r} is not mentioned in the request"
    return None


def check_omitted(omitted: list[str], names: list[str], apis: ApiList) -> str | None:
    required = {p.name for n in names if (api := api_by_name(apis, n))
                for p in api.parameters if p.required}
    for item in omitted:
        if item not in required:
            return f"omitted {item!r} is not a required parameter of the APIs the task needs"
    return None


def check_absent(absent: str, request: str, apis: ApiList) -> str | None:
    """The capability the request needs must really be missing from the list, and asked for."""
    wanted = content_words(absent)
    if not wanted:
        return "absent capability is empty"
    for api in apis.apis:
        if name_words(api.name) and name_words(api.name) <= wanted:
            return f"absent capability {absent!r} is offered by API {api.name}"
    if not wanted & content_words(request):
        return "request does not ask for the absent capability"
    return None


# -- the assistant's action --------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,),
                                       "number": (int, float), "boolean": (bool,),
                                       "array": (list,)}


def check_argument_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False
    if kind == "string":
        return isinstance(value, str) and bool(value.strip())
    return isinstance(value, _TYPES[kind])


def check_call(call: dict[str, Any], apis: ApiList) -> str | None:
    """The call names a listed API, passes every required argument, nothing unknown, and each
    value has the parameter's type."""
    api = api_by_name(apis, call.get("api", ""))
    if api is None:
        return f"calls {call.get('api')!r}, which is not in the API list"
    arguments: dict[str, Any] = call.get("arguments") or {}
    params = {p.name: p for p in api.parameters}
    unknown = [k for k in arguments if k not in params]
    if unknown:
        return f"call to {api.name} passes unknown argument {unknown[0]!r}"
    missing = [p.name for p in api.parameters if p.required and arguments.get(p.name) is None]
    if missing:
        return f"call to {api.name} lacks required argument {missing[0]!r}"
    for key, value in arguments.items():
        if value is not None and not check_argument_type(value, params[key].type):
            return f"argument {key}={value!r} of {api.name} is not a {params[key].type}"
    return None


def _value_texts(value: Any) -> list[str]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    if isinstance(value, list):
        return [t for v in value for t in _value_texts(v)]
    return [str(value)]


def check_values_from_request(call: dict[str, Any], request: str) -> str | None:
    """Every value passed comes from what the user said (booleans excepted): a call with an
    invented value is a wrong call, however well-formed."""
    said = content_words(request) | set(re.findall(r"\d+(?:\.\d+)?", request))
    for key, value in (call.get("arguments") or {}).items():
        for text in _value_texts(value):
            words = content_words(text) | set(re.findall(r"\d+(?:\.\d+)?", text))
            if not words or not words & said or len(words & said) * 2 < len(words):
                return (f"argument {key}={text!r} of {call.get('api')} does not come from "
                        "the request")
    return None


def check_behaviour(expects: str, calls: list[dict[str, Any]], message: str,
                    lo: int = 1, hi: int = 3) -> str | None:
    """Call types call (as many times as the type says); missing-parameter types ask and
    absent-API types decline, and neither may call anything."""
    if expects in CALL_KINDS:
        if not calls:
            return "expected API calls, the assistant made none"
        if len(calls) < lo:
            return f"needs at least {lo} calls, the assistant made {len(calls)}"
        if len(calls) > hi:
            return f"needs at most {hi} calls, the assistant made {len(calls)}"
        return None
    what = "missing-parameter" if expects == "ask" else "absent-API"
    if calls:
        return f"{what} request must not call an API, the assistant called {calls[0].get('api')}"
    if check_repetition(message):
        return "degenerate repetition"
    if expects == "ask" and "?" not in message:
        return "the assistant asks nothing: its message has no question"
    if expects == "decline" and not any(c in f" {message.lower()} " for c in REFUSAL_CUES):
        return "the assistant does not say the request cannot be done"
    return None


def check_calls_match_task(calls: list[dict[str, Any]], names: list[str]) -> str | None:
    """The blind teacher must call exactly the APIs the task's writer meant."""
    called = {c.get("api") for c in calls}
    if called != set(names):
        return f"the assistant called {sorted(map(str, called))}, the task needs {sorted(names)}"
    return None


def check_asks_for(message: str, omitted: list[str]) -> str | None:
    words = content_words(message) | {w.lower() for w in re.findall(r"[A-Za-z0-9_]+", message)}
    for item in omitted:
        if item.lower() not in words and not name_words(item) & words:
            return f"the assistant does not ask for the missing {item!r}"
    return None


def check_explains_absent(message: str, absent: str, request: str) -> str | None:
    if not content_words(message) & (content_words(absent) | content_words(request)):
        return "the assistant's refusal does not say what cannot be done"
    return None


# -- the simulated tool responses and the final answer -----------------------------------------

def check_tool_result(result: str) -> str | None:
    if not content_words(result) and not re.search(r"\d", result):
        return "simulated tool response is empty of content"
    return check_repetition(result)


def _terms(text: str) -> set[str]:
    return content_words(text) | set(re.findall(r"\d+(?:\.\d+)?", text))


def check_final_answer(answer: str, results: list[str], request: str) -> str | None:
    """The final answer reports what the tools returned: something from their responses that the
    user did not already say (restating the request reports nothing)."""
    if problem := check_repetition(answer):
        return problem
    if not (_terms(answer) & _terms(" ".join(results))) - _terms(request):
        return "final answer does not report the tool responses"
    return None
