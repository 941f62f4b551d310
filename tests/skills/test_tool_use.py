"""Tool use: hand-written validator cases, the reply shapes, and the multi-turn flow with a
scripted teacher over a real code file."""

import json

import pytest

from agents.tool_use import validators as v
from agents.tool_use.models import (Api, ApiList, ApiParam, api_functions, api_list_model,
                                    reply_calls, reply_model, seed_functions,
                                    seed_signatures)
from tests.conftest import write_corpus
from tests.skill_harness import run_skill, skill_teacher

P = ApiParam
APIS = ApiList(apis=[
    Api(name="push", description="Add a named task to the queue",
        parameters=[P(name="name", type="string", required=True),
                    P(name="priority", type="integer", required=False)]),
    Api(name="cancel", description="Cancel a pending task by its name",
        parameters=[P(name="name", type="string", required=True)]),
])
SEED = '''class TaskQueue:
    """A priority queue of named tasks."""

    def push(self, name: str, priority: int = 0) -> None:
        """Add a task; lower priority numbers run first."""

    def cancel(self, name: str) -> bool:
        """Cancel a pending task. Returns False if no such task is queued."""
'''


def apis(*specs: Api) -> ApiList:
    return ApiList(apis=list(specs))


# -- the API list -------------------------------------------------------------------------------

def test_names_are_normalized_to_identifiers():
    raw = apis(Api(name="Push Task()", description="Add a named task to the queue",
                   parameters=[P(name="due-date", type="string", required=True)]),
               APIS.apis[1])
    fixed = v.normalize_api_list(raw)
    assert fixed.apis[0].name == "Push_Task" and fixed.apis[0].parameters[0].name == "due_date"
    assert v.name_words("pushTask") == v.name_words("push_task") == {"push", "task"}


def test_a_good_api_list_passes():
    assert v.check_api_list(APIS) is None


@pytest.mark.parametrize("first, reason", [
    (Api(name="9lives", description="Count the lives of a cat", parameters=[]),
     "'9lives' is not an identifier"),
    (Api(name="cancel", description="Another cancel function here", parameters=[]),
     "two APIs are named cancel"),
    (Api(name="push_task", description="Push task", parameters=[]),
     "no description beyond its name"),
    (Api(name="push", description="Add a task to the queue",
         parameters=[P(name="self", type="string", required=True)]), "lists 'self'"),
    (Api(name="push", description="Add a task to the queue",
         parameters=[P(name="name", type="string", required=True),
                     P(name="name", type="integer", required=False)]), "a parameter twice"),
    (Api(name="push", description="Add a task to the queue",
         parameters=[P(name="due date", type="string", required=True)]),
     "'due date' of API push is not an identifier"),
    (Api(name="The_task_queue_is_a_priority", description="A queue of tasks", parameters=[]),
     "is a phrase, not a function name"),
])
def test_broken_api_lists_are_caught(first, reason):
    assert reason in v.check_api_list(apis(first, APIS.apis[1]))


def test_a_list_without_any_required_parameter_is_useless():
    optional = apis(*(a.model_copy(update={"parameters": [p.model_copy(update={"required": False})
                                                          for p in a.parameters]})
                      for a in APIS.apis))
    assert v.check_api_list(optional) == "no API has a required parameter"


def test_apis_from_the_code_must_all_occur_in_it_siblings_only_one():
    invented = apis(APIS.apis[0], Api(name="list_tasks", description="List the queued tasks",
                                      parameters=[]))
    assert v.check_apis_grounded(APIS, SEED, every=True) is None
    assert v.check_apis_grounded(invented, SEED, every=True) == \
        "API list_tasks does not occur in the seed"
    assert v.check_apis_grounded(invented, SEED, every=False) is None
    alien = apis(Api(name="send_mail", description="Send an email", parameters=[]),
                 Api(name="fetch_url", description="Download a page", parameters=[]))
    assert v.check_apis_grounded(alien, SEED, every=False) == \
        "no API in the list comes from the seed"


def test_the_seeds_functions_become_the_only_names_apis_from_code_may_use():
    assert seed_functions(SEED) == ["push", "cancel"]
    assert seed_functions("function fetchUser(id) {}\nfunc Parse(s string)\nfn run()") == \
        ["fetchUser", "Parse", "run"]
    assert seed_functions("def _private(x): pass\ndef __len__(self): pass") == []
    model = api_list_model(["push", "cancel"])
    name = model.model_json_schema()["$defs"]["Api"]["properties"]["name"]
    assert name["enum"] == ["push", "cancel"]
    with pytest.raises(ValueError):
        model.model_validate({"apis": [{"name": "send_mail", "description": "Send mail",
                                        "parameters": []}] * 2})


def test_signatures_are_read_from_the_code():
    assert seed_signatures(SEED) == {"push": {"name": True, "priority": False},
                                     "cancel": {"name": True}}
    code = ("function f(a, b = 2) {}\nfunc G(name string, n int) error {}\n"
            "fn h(&mut self, x: &str, y: Vec<(u8, u8)>) {}\n"
            "def k(a, *args, b: Dict[str, int] = {}, **kw): pass\ndef cut(a, b")
    assert seed_signatures(code) == {"f": {"a": True, "b": False},
                                     "G": {"name": True, "n": True},
                                     "h": {"x": True, "y": True},
                                     "k": {"a": True, "b": False}}


@pytest.mark.parametrize("params, reason", [
    ([P(name="name", type="string", required=True),
      P(name="priority", type="integer", required=False)], None),
    ([P(name="name", type="string", required=True)], None),
    ([P(name="push", type="integer", required=True)],
     "parameter 'push' is not in the code's signature of push"),
    ([P(name="name", type="string", required=True),
      P(name="priority", type="integer", required=True)],
     "parameter 'priority' of push is optional in the code"),
    ([P(name="name", type="string", required=False)],
     "parameter 'name' of push is required in the code"),
])
def test_apis_from_the_code_take_its_parameters(params, reason):
    listed = apis(APIS.apis[0].model_copy(update={"parameters": params}),
                  Api(name="list_tasks", description="List the queued tasks",
                      parameters=[P(name="anything", type="string", required=True)]))
    assert v.check_params_match_code(listed, seed_signatures(SEED)) == reason


def test_function_signatures_have_the_usual_shape():
    push = api_functions(APIS)[0]
    assert push == {"name": "push", "description": "Add a named task to the queue",
                    "parameters": {"type": "object",
                                   "properties": {"name": {"type": "string"},
                                                  "priority": {"type": "integer"}},
                                   "required": ["name"]}}


# -- the task -----------------------------------------------------------------------------------

@pytest.mark.parametrize("request_, reason", [
    ("Queue backup now", "too short"),
    ('Please call push with {"name": "backup"} for me', "JSON or code"),
    ("push(name='backup')", "JSON or code"),
    ("Please queue the backup task with priority two today.", None),
])
def test_requests_are_a_users_words(request_, reason):
    got = v.check_request(request_)
    assert got is None if reason is None else reason in got


def test_task_apis_must_be_listed_distinct_and_enough():
    assert v.check_task_apis(["push", "cancel"], APIS, 2) is None
    assert "delete, which is not in the list" in v.check_task_apis(["delete"], APIS, 1)
    assert v.check_task_apis(["push", "push"], APIS, 2) == "task names the same API twice"
    assert "2 or more different APIs, it names 1" in v.check_task_apis(["push"], APIS, 2)


def test_extra_details_are_not_parameters_and_are_in_the_request():
    request = "Queue the backup task with priority 2 and paint it green."
    assert v.check_extra(["colour green"], ["push"], APIS, request) is None
    assert "'priority' is a parameter of API push" in v.check_extra(["priority"], ["push"],
                                                                    APIS, request)
    assert "'deadline' is not mentioned" in v.check_extra(["deadline"], ["push"], APIS, request)


def test_omitted_values_are_required_parameters_of_the_needed_apis():
    assert v.check_omitted(["name"], ["push"], APIS) is None
    assert "'priority' is not a required parameter" in v.check_omitted(["priority"], ["push"],
                                                                       APIS)


def test_absent_capability_is_missing_from_the_list_and_requested():
    request = "Please email my team the list of queued tasks."
    assert v.check_absent("email the team", request, APIS) is None
    assert "offered by API cancel" in v.check_absent("cancel the old task", request, APIS)
    assert v.check_absent("print a report", request, APIS) == \
        "request does not ask for the absent capability"
    assert v.check_absent("the", request, APIS) == "absent capability is empty"


# -- the assistant's move -----------------------------------------------------------------------

@pytest.mark.parametrize("call, reason", [
    ({"api": "push", "arguments": {"name": "backup", "priority": 2}}, None),
    ({"api": "push", "arguments": {"name": "backup"}}, None),
    ({"api": "delete", "arguments": {"name": "backup"}}, "'delete', which is not in the API list"),
    ({"api": "push", "arguments": {"priority": 2}}, "lacks required argument 'name'"),
    ({"api": "push", "arguments": {"name": "backup", "colour": "green"}},
     "unknown argument 'colour'"),
    ({"api": "push", "arguments": {"name": "backup", "priority": "high"}},
     "priority='high' of push is not a integer"),
    ({"api": "push", "arguments": {"name": "backup", "priority": True}}, "is not a integer"),
    ({"api": "push", "arguments": {"name": "  "}}, "is not a string"),
])
def test_calls_name_listed_apis_with_their_arguments(call, reason):
    got = v.check_call(call, APIS)
    assert got is None if reason is None else reason in got


def test_argument_types():
    assert v.check_argument_type(2.5, "number") and v.check_argument_type(2, "number")
    assert v.check_argument_type(["a"], "array") and not v.check_argument_type("a", "array")
    assert v.check_argument_type(False, "boolean") and not v.check_argument_type(0, "boolean")


@pytest.mark.parametrize("arguments, reason", [
    ({"name": "backup", "priority": 2}, None),
    ({"name": "nightly backup", "priority": 2.0}, None),
    ({"name": "backup", "priority": 5}, "priority='5' of push does not come from the request"),
    ({"name": "invoice run"}, "name='invoice run'"),
])
def test_call_values_come_from_the_request(arguments, reason):
    request = "Queue the nightly backup task with priority 2."
    got = v.check_values_from_request({"api": "push", "arguments": arguments}, request)
    assert got is None if reason is None else reason in got


CALL = {"api": "push", "arguments": {"name": "backup"}}


@pytest.mark.parametrize("expects, calls, message, lo, reason", [
    ("call", [CALL], "", 1, None),
    ("call", [], "Which task?", 1, "made none"),
    ("call", [CALL], "", 2, "at least 2 calls, the assistant made 1"),
    ("call_extra", [CALL] * 4, "", 1, "at most 3 calls"),
    ("ask", [], "Which name should the task have?", 1, None),
    ("ask", [CALL], "Which name?", 1, "missing-parameter request must not call an API"),
    ("ask", [], "I will queue it for you.", 1, "has no question"),
    ("decline", [], "I cannot send email: no API does that.", 1, None),
    ("decline", [CALL], "I cannot.", 1,
     "absent-API request must not call an API, the assistant called push"),
    ("decline", [], "Sure, the email is on its way.", 1, "does not say the request cannot be done"),
])
def test_call_types_call_and_the_others_ask_or_decline(expects, calls, message, lo, reason):
    got = v.check_behaviour(expects, calls, message, lo, 3)
    assert got is None if reason is None else reason in got


def test_the_assistant_calls_what_the_task_needs():
    cancel = {"api": "cancel", "arguments": {"name": "report"}}
    assert v.check_calls_match_task([CALL, cancel], ["push", "cancel"]) is None
    assert v.check_calls_match_task([CALL], ["push", "cancel"]) == \
        "the assistant called ['push'], the task needs ['cancel', 'push']"


def test_the_question_names_the_missing_values():
    assert v.check_asks_for("What name should the task get?", ["name"]) is None
    assert v.check_asks_for("What is the due date?", ["due_date"]) is None
    assert v.check_asks_for("Which priority should it have?", ["name"]) == \
        "the assistant does not ask for the missing 'name'"


def test_the_refusal_says_what_cannot_be_done():
    assert v.check_explains_absent("I cannot send an email.", "email the team",
                                   "Email my team.") is None
    assert v.check_explains_absent("Sorry, I cannot.", "email the team", "Email my team.") == \
        "the assistant's refusal does not say what cannot be done"


def test_tool_responses_and_the_final_answer():
    assert v.check_tool_result("Task backup queued at position 3") is None
    assert v.check_tool_result("42") is None
    assert v.check_tool_result("the of") == "simulated tool response is empty of content"
    request = "Queue the backup task with priority 2."
    results = ["Task backup queued at position 3"]
    assert v.check_final_answer("The backup task is queued at position 3.", results,
                                request) is None
    assert v.check_final_answer("Your backup task with priority 2 is in the queue.", results,
                                request) == "final answer does not report the tool responses"


def test_reply_schema_offers_only_listed_apis_and_their_parameters():
    model = reply_model(APIS)
    schema = json.dumps(model.model_json_schema())
    assert '"const": "push"' in schema and '"additionalProperties": false' in schema
    reply = model.model_validate({"calls": [{"api": "push", "arguments": {"name": "b"}},
                                            {"api": "cancel", "arguments": {"name": "c"}}],
                                  "message": ""})
    assert reply_calls(reply) == [{"api": "push", "arguments": {"name": "b"}},
                                  {"api": "cancel", "arguments": {"name": "c"}}]
    with pytest.raises(ValueError):
        model.model_validate({"calls": [{"api": "push", "arguments": {"name": "b", "x": 1}}],
                              "message": ""})


# -- the flow -----------------------------------------------------------------------------------

# per task type: the writer's task, and the blind teacher's right move for its request
TASKS = {
    "one api all params": ({"apis": ["push"],
                            "request": "Please queue the task backup with priority 2 tonight."},
                           [{"api": "push", "arguments": {"name": "backup", "priority": 2}}], ""),
    "one api extra params": ({"apis": ["push"], "extra": ["colour green"],
                              "request": "Please queue the task backup with priority 2 and "
                                         "colour it green."},
                             [{"api": "push", "arguments": {"name": "backup", "priority": 2}}], ""),
    "one api missing required": ({"apis": ["push"], "omitted": ["name"],
                                  "request": "Please queue a new task with priority 2 for me."},
                                 [], "Which name should the new task have?"),
    "multi api all params": ({"apis": ["push", "cancel"],
                              "request": "Queue the task backup with priority 2, then cancel "
                                         "the task report."},
                             [{"api": "push", "arguments": {"name": "backup", "priority": 2}},
                              {"api": "cancel", "arguments": {"name": "report"}}], ""),
    "multi api some missing": ({"apis": ["push", "cancel"], "omitted": ["name"],
                                "request": "Queue a task with priority 2 and then cancel the "
                                           "old one please."},
                               [], "What name should I use for each task?"),
    "needs absent api": ({"absent": "send an email about the queue",
                          "request": "Please send an email to my team listing the queue."},
                         [], "I cannot send an email: no listed API does that."),
    "needs several some absent": ({"apis": ["push"], "absent": "email the team",
                                   "request": "Queue the task backup and email the team about it."},
                                  [], "I cannot email the team; no API here sends email."),
}
RESULTS = {"push": "Task backup queued at position 3", "cancel": "Task report cancelled"}


def scripted(always_call: bool = False):
    """A teacher that is right every time (or that calls even when it must not)."""
    moves = {t["request"]: (calls, msg) for t, calls, msg in TASKS.values()}

    def reply(prompt: str, schema: dict) -> dict | None:
        if "as API signatures" in prompt or "APIs of this library" in prompt:
            return {"apis": [a.model_dump() for a in APIS.apis]}
        if "Write ONE request" in prompt:
            kind = prompt.split('Type "', 1)[1].split('"', 1)[0]
            return TASKS[kind][0]
        if "Suggest one to three" in prompt:
            return {"suggestions": ["Give the task a concrete name."]}
        if "Rewrite the task" in prompt:  # the edit keeps the task as it was
            return json.loads(prompt.split("Task (JSON):\n", 1)[1].split("\n", 1)[0])
        if "Decide what to do" in prompt:
            request = prompt.split("The user writes: ", 1)[1].split("\n", 1)[0]
            calls, message = moves[request]
            if always_call and not calls:
                calls = [{"api": "push", "arguments": {"name": "backup"}}]
            return {"calls": calls, "message": message}
        if "You play the API" in prompt:
            return {"result": RESULTS[prompt.split("You play the API ", 1)[1].split(":", 1)[0]]}
        if "Tell the user" in prompt:
            return {"answer": "Done: the task is queued at position 3 and the rest went fine."}
        return None
    return reply


@pytest.fixture
def code_corpus(tmp_path):
    return write_corpus(tmp_path / "code", {"task_queue.py": SEED})


def test_flow_writes_multi_turn_records_for_every_task_type(code_corpus, tmp_path):
    schemas = {}

    def reply(prompt, schema):
        if "as API signatures" in prompt or "APIs of this library" in prompt:
            schemas[prompt.split("\n", 1)[0]] = schema
        return scripted()(prompt, schema)
    # one record per type (in-flight items count toward the cap: with 8 in flight, an item of
    # the next deck could otherwise finish first and repeat a type); one item per chunk so that
    # the 7 items draw 7 transformations, both kinds among them (the plan is seeded)
    summary, data, rejected = run_skill("tool_use", code_corpus, tmp_path / "out",
                                        skill_teacher(reply), num=7, max_type_share=1.0,
                                        flow={"refine_rounds": 1, "per_chunk": 1})
    # apis_from_code may only name the seed's functions; sibling_apis may name any
    names = {first: json.dumps(s["$defs"]["Api"]["properties"]["name"])
             for first, s in schemas.items()}
    assert any('"enum": ["push", "cancel"]' in n for f, n in names.items() if "Read the" in f)
    assert all("enum" not in n for f, n in names.items() if "library" in f)
    assert summary["complete"] and len(data) == 7, rejected
    by_type = {r["metadata"]["instruction_type"]: r for r in data}
    assert len(by_type) == 7  # one deck: every type once
    for kind, rec in by_type.items():
        meta, msgs = rec["metadata"], rec["messages"]
        assert meta["split"] == "tool_use" and meta["transformation"] in ("apis_from_code",
                                                                         "sibling_apis")
        assert meta["api_list"] == api_functions(APIS)
        assert msgs[0]["role"] == "system" and '"name": "push"' in msgs[0]["content"]
        assert msgs[1] == {"role": "user", "content": meta["task"]["request"]}
        assert meta["refinement"][0]["kept"] is True
        if meta["expected_behaviour"] == "call":
            calls = json.loads(msgs[2]["content"])
            assert [c["name"] for c in calls] == [c["api"] for c in meta["api_calls"]]
            assert [m["role"] for m in msgs] == (["system", "user", "assistant"]
                                                 + ["tool"] * len(calls) + ["assistant"])
            assert json.loads(msgs[3]["content"]) == {"name": "push",
                                                      "result": RESULTS["push"]}
            assert "position 3" in msgs[-1]["content"]
        else:
            assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
            assert meta["api_calls"] == [] and msgs[2]["content"] == meta["assistant_message"]
    assert by_type["multi_api_all_params"]["metadata"]["expected_behaviour"] == "call"
    assert len(json.loads(by_type["multi_api_all_params"]["messages"][2]["content"])) == 2
    assert by_type["one_api_missing_required"]["metadata"]["expected_behaviour"] == "ask"
    assert by_type["needs_absent_api"]["metadata"]["expected_behaviour"] == "decline"


def test_flow_rejects_calls_where_the_assistant_must_ask_or_decline(code_corpus, tmp_path):
    summary, data, rejected = run_skill("tool_use", code_corpus, tmp_path / "out",
                                        skill_teacher(scripted(always_call=True)), num=2,
                                        flow={"refine_rounds": 0}, max_attempts=14)
    assert all(r["metadata"]["expected_behaviour"] == "call" for r in data)
    reasons = {r["subcategory"]: r["reason"] for r in rejected}
    assert "missing-parameter request must not call an API, the assistant called push" in \
        reasons.values()
    assert any("absent-API request must not call an API" in r for r in reasons.values())
    assert all(r["stage"] == "validate" for r in rejected)


def test_flow_rejects_an_api_list_invented_beside_the_code(code_corpus, tmp_path):
    def invented(prompt, schema):
        if "as API signatures" in prompt or "APIs of this library" in prompt:
            return {"apis": [{"name": "send_mail", "description": "Send an email to someone",
                              "parameters": [{"name": "to", "type": "string", "required": True}]},
                             {"name": "fetch_url", "description": "Download a web page",
                              "parameters": []}]}
        return scripted()(prompt, schema)
    summary, data, rejected = run_skill("tool_use", code_corpus, tmp_path / "out",
                                        skill_teacher(invented), num=1,
                                        flow={"refine_rounds": 0}, max_attempts=16)
    assert data == [] and len(rejected) == 16
    assert {r["stage"] for r in rejected} == {"transform"}
    expected = {"apis_from_code": "invalid json",  # the names are an enum of the seed's
                "sibling_apis": "no API in the list comes from the seed"}
    assert all(r["reason"] == expected[r["metadata"]["transformation"]] for r in rejected)
    assert {r["metadata"]["transformation"] for r in rejected} == set(expected)
    assert "apis.0.name" in next(r["detail"] for r in rejected
                                 if r["metadata"]["transformation"] == "apis_from_code")
