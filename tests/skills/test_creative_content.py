"""Creative content: hand-written cases for every validator, the task/piece checks built from a
subcategory's params, refinement that must add constraints, and the flow with a scripted
teacher over real files."""

import json
import re

import pytest

from agents.creative_content import validators as v
from agents.creative_content.skill import (Piece, answer_model, check_piece, check_task_fields,
                                           constraint_list, piece_of, task_model)
from agents.items import WorkItem
from agents.registry import load_skill
from agents.task import Draft
from tests.skill_harness import run_skill, skill_teacher

SKILL = load_skill("creative_content")
PASSAGE = ("Mount Etna in Sicily rises about 3,357 metres and is one of the most active "
           "volcanoes in the world; its lava flows have reached the town of Catania.")


def sub(name):
    return SKILL.spec.subcategory(name)


def task(name, **fields):
    return task_model(sub(name)).model_validate(fields)


# -- task checks -----------------------------------------------------------------------------

def test_a_real_request_for_the_form_passes():
    assert v.check_request("Write a limerick about the lava of Mount Etna.", ["limerick"]) is None


@pytest.mark.parametrize("instruction, reason", [
    ("Write a limerick.", "too short"),
    ("Write a limerick about the following given text", "names no subject"),
    ("Mount Etna is an active volcano in Sicily.", "not a writing request"),
    ("Write a short story about the lava of Mount Etna.", "does not ask for a limerick"),
    ("Write a limerick about the volcano in the passage.", "'the passage'"),
])
def test_bad_requests_are_caught(instruction, reason):
    assert reason in v.check_request(instruction, ["limerick"])


def test_task_must_share_a_subject_word_with_the_seed():
    assert v.check_on_topic("Write a haiku about autumn rain.", ["Etna"], PASSAGE) is None
    assert "no subject word" in v.check_on_topic("Write a haiku about autumn rain.", ["leaves"],
                                                 PASSAGE)


@pytest.mark.parametrize("instruction, counts, reason", [
    ("Write an 8-line poem about Etna.", {"line": 8}, None),
    ("Write a ten-line poem about Etna.", {"line": 8}, "says 10 lines, the constraints say 8"),
    ("Write a poem in three stanzas about Etna.", {"stanza": 2}, "says 3 stanzas"),
    ("Write a 50 word story about Etna.", {"min_words": 40, "max_words": 60}, None),
    ("Write a 200 word story about Etna.", {"min_words": 40, "max_words": 60},
     "says 200 words, the constraints say 40-60"),
    ("Write a five line poem about Etna.", {"line": None}, None),
])
def test_numbers_in_the_instruction_must_agree_with_the_constraints(instruction, counts, reason):
    got = v.check_stated_counts(instruction, counts)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("keywords, forbidden, names, reason", [
    (["lava", "Mount Etna"], ["fire"], [], None),
    (["a very long keyword phrase"], [], [], "not one to three words"),
    (["..."], [], [], "not one to three words"),
    (["lava", "Lava"], [], [], "listed twice"),
    (["lava"], ["hot rock"], [], "not a single word"),
    (["lava"], ["fire", "Fire"], [], "forbidden word 'Fire' listed twice"),
    (["lava flow"], ["lava"], [], "both required (in 'lava flow') and forbidden"),
    (["lava"], ["anna"], ["Anna", "Ben"], "is a speaker's name"),
])
def test_keywords_and_forbidden_words(keywords, forbidden, names, reason):
    got = v.check_terms(keywords, forbidden, names)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("args, reason", [
    ((8, 2, "couplets", None, None, ["lava"]), None),
    ((5, 3, None, None, None, []), "3 stanzas cannot be filled by 5 lines"),
    ((7, 1, "couplets", None, None, []), "even number of lines, not 7"),
    ((6, 1, "alternate", None, None, []), "multiple of four lines, not 6"),
    ((4, None, "AABBA", None, None, []), "AABBA needs exactly five lines"),
    ((None, None, None, 60, 60, []), "word range 60-60 is empty"),
    ((None, None, None, None, 3, ["Mount Etna", "red lava"]), "need 4 words, more than"),
])
def test_constraints_must_fit_together(args, reason):
    got = v.check_form_fits(*args)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("word, ok", [("lava", True), ("Catania", True), ("ab", False),
                                      ("volcanoes", False), ("two words", False), ("lava1", False)])
def test_acrostic_word(word, ok):
    got = v.check_acrostic_word(word)
    assert (got is None) == ok and (ok or "3 to 8 letters" in got)


@pytest.mark.parametrize("names, reason", [
    (["Anna", "Old Ben"], None),
    (["Anna", "anna"], "same name"),
    (["Anna", "Dr: Who"], "not a name"),
    (["Anna", "the old man from town"], "not a name"),
])
def test_speaker_names(names, reason):
    got = v.check_speaker_names(names)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("before, after, reason", [
    (["exactly 5 lines", "use the word 'lava'"],
     ["exactly 5 lines", "use the word 'lava'", "do not use the word 'fire'"], None),
    (["exactly 5 lines", "use the word 'lava'"], ["exactly 5 lines", "use the word 'ash'",
                                                  "use the word 'sky'"],
     "drops the constraint: use the word 'lava'"),
    (["exactly 5 lines"], ["exactly 5 lines"], "adds no constraint"),
])
def test_refinement_must_keep_every_constraint_and_add_one(before, after, reason):
    got = v.check_adds_constraints(before, after)
    assert got is None if reason is None else reason in got


def test_task_fields_for_a_subcategory_are_checked_together():
    good = task("limerick", keywords=["Etna"], lines=5, rhyme="AABBA", forbidden=["fire"],
                instruction="Write a limerick about a goat living on the slopes of Mount Etna.")
    assert check_task_fields(good, sub("limerick").params, PASSAGE) is None
    bad = good.model_copy(update={"forbidden": ["Etna"]})
    assert "both required" in check_task_fields(bad, sub("limerick").params, PASSAGE)
    off = good.model_copy(update={"instruction": "Write a limerick about a goat on a farm.",
                                  "keywords": ["goat"]})
    assert "no subject word" in check_task_fields(off, sub("limerick").params, PASSAGE)


def test_fixed_constraints_are_literals_in_the_schema():
    schema = task_model(sub("limerick")).model_json_schema()["properties"]
    assert schema["lines"]["const"] == 5 and schema["rhyme"]["const"] == "AABBA"
    with pytest.raises(ValueError):
        task("limerick", keywords=["Etna"], lines=4, rhyme="AABBA", forbidden=[],
             instruction="Write a limerick about Mount Etna erupting.")


def test_constraint_list_states_every_field():
    t = task("dialogue_scene", keywords=["lava"], speakers=["Anna", "Ben"], lines=4, title=True,
             forbidden=["fire"], instruction="Write a dialogue scene about lava near Etna.")
    assert constraint_list(t, sub("dialogue_scene").params) == [
        "a dialogue between Anna and Ben; every line starts with the speaker's name and a colon",
        "exactly 4 lines of dialogue", "use the word 'lava'", "do not use the word 'fire'",
        "give it a title"]
    s = task("slogan", keywords=["Etna"], max_words=6, forbidden=[],
             instruction="Write a slogan for a tour of Mount Etna.")
    assert constraint_list(s, sub("slogan").params) == ["a single line", "at most 6 words",
                                                         "use the word 'Etna'"]


def _draft(name, t):
    item = WorkItem(id="x", skill="creative_content", subcategory=name, transformation="identity",
                    seed_chunk_id="c", seed=7)
    return Draft(item=item, sub=sub(name), chunk=None, passage=PASSAGE, task=t)


def test_check_task_on_a_refinement_edit_requires_an_added_constraint():
    t = task("haiku", keywords=["lava"], lines=3, max_words=14, forbidden=[],
             instruction="Write a haiku about lava on Mount Etna at dawn.")
    draft = _draft("haiku", t)
    assert SKILL.check_task(draft) is None  # the fresh task sets the baseline
    draft.task = t.model_copy(update={"keywords": ["Etna"]})
    assert "drops the constraint: use the word 'lava'" in SKILL.check_task(draft)
    draft.task = t.model_copy(update={"forbidden": ["fire"]})
    assert SKILL.check_task(draft) is None
    assert "do not use the word 'fire'" in draft.extra["constraints"]
    draft.task = t.model_copy(update={"forbidden": ["fire"], "instruction": t.instruction + " "})
    assert "adds no constraint" in SKILL.check_task(draft)


# -- piece checks ----------------------------------------------------------------------------

LIMERICK = ["A goat on the slopes of Mount Etna", "would climb every morning, not later,",
            "it chewed on the ash", "and made quite a splash,", "then it fell in the hot crater."]


@pytest.mark.parametrize("check, args, reason", [
    (v.check_line_count, (LIMERICK, 5), None),
    (v.check_line_count, (LIMERICK[:4], 5), "has 4 lines, the task asks for 5"),
    (v.check_no_empty_lines, (LIMERICK,), None),
    (v.check_no_empty_lines, (["one", " ... ", "three"],), "line 2 is empty"),
    (v.check_stanza_count, ([["a b"], ["c d"]], 2), None),
    (v.check_stanza_count, ([["a b", "c d"], [""]], 2), "has 1 stanzas, the task asks for 2"),
    (v.check_line_length, (LIMERICK, 12), None),
    (v.check_line_length, (["lava " * 13], 12), "line 1 has 13 words, too long"),
    (v.check_word_count, ("one two three", 2, 5), None),
    (v.check_word_count, ("one two three", 4, 5), "has 3 words, the task asks for at least 4"),
    (v.check_word_count, ("one two three four", None, 3), "has 4 words, the task allows at most 3"),
    (v.check_keywords, ("Rivers of lava flowed past Mount Etna", ["lava", "mount etna"]), None),
    (v.check_keywords, ("The lavas cooled", ["lava"]), None),
    (v.check_keywords, ("Lavalamp glow", ["lava"]), "missing required keyword 'lava'"),
    (v.check_forbidden, ("The mountain glowed", ["fire"]), None),
    (v.check_forbidden, ("The fires of the mountain", ["fire"]), "uses forbidden word 'fire'"),
    (v.check_forbidden, ("Fireworks over the bay", ["fire"]), None),
    (v.check_single_line, ("Climb Etna, touch the sky", ), None),
    (v.check_single_line, ("Climb Etna\nTouch the sky", ), "spans several lines"),
    (v.check_title, ("Etna at Dawn", LIMERICK), None),
    (v.check_title, ("  ", LIMERICK), "title is empty"),
    (v.check_title, ("one two three four five six seven eight nine ten eleven", LIMERICK),
     "title has 11 words"),
    (v.check_title, ("A goat on the slopes of Mount Etna!", LIMERICK), "repeats the first line"),
    (v.check_repeated_lines, (["Etna sleeps", "Etna sleeps", "the sea wakes"],), None),
    (v.check_repeated_lines, (["Etna sleeps"] * 3,), "repeats the line 'etna sleeps' 3 times"),
])
def test_piece_validators(check, args, reason):
    got = check(*args)
    assert got is None if reason is None else reason in got


LIMERICK_RHYMED = ["A goat who lived high on a mountain", "would drink every day from a fountain",
                   "it chewed on the ash", "and made quite a splash",
                   "then dozed by the foot of the mountain"]


@pytest.mark.parametrize("lines, scheme, reason", [
    (LIMERICK_RHYMED, "AABBA", None),
    (LIMERICK, "AABBA", "lines 1 and 2 do not rhyme ('etna' / 'later')"),
    (LIMERICK_RHYMED[:4] + ["then sat down to wait for a bus"], "AABBA",
     "lines 2 and 5 do not rhyme ('fountain' / 'bus')"),
    (LIMERICK_RHYMED[:4] + ["then slept by the side of the fountain"], "AABBA",
     "rhyme a word with itself ('fountain')"),
    (LIMERICK_RHYMED[:4], "AABBA", "4 lines cannot follow the rhyme scheme AABBA"),
    (["the night is long", "we sing a song", "the stars are bright", "we share the light"],
     "couplets", None),
    (["the night is long", "we sing a song", "the stars are bright", "we share the sky"],
     "couplets", "lines 3 and 4 do not rhyme ('bright' / 'sky')"),
    (["the night is long", "we walk the bay", "we sing a song", "and end the day"],
     "alternate", None),
    (["the night is long", "we walk the bay", "we sing a tune", "and end the day"],
     "alternate", "lines 1 and 3 do not rhyme ('long' / 'tune')"),
    (["one line", "two lines", "three lines"], "alternate", "cannot follow the rhyme scheme"),
    (["free verse", "needs no rhyme"], "none", None),
])
def test_rhyme(lines, scheme, reason):
    got = v.check_rhyme(lines, scheme)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("lines, reason", [
    (["Lava runs", "A river of fire", "Vast and slow", "All night"], None),
    (["lava runs", "(a) river of fire", "vast and slow", "all night"], None),
    (["Lava runs", "A river of fire", "Vast and slow"], "has 3 lines, the acrostic 'LAVA' needs 4"),
    (["Lava runs", "The river of fire", "Vast and slow", "All night"],
     "line 2 starts with 'T', the acrostic needs 'A'"),
])
def test_acrostic(lines, reason):
    got = v.check_acrostic(lines, "lava")
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("lines, reason", [
    (["Anna: The lava is close.", "Old Ben: We leave at dawn."], None),
    (["Anna: The lava is close.", "We leave at dawn."], "line 2 has no speaker label"),
    (["Anna: The lava is close.", "Carl: We leave at dawn."],
     "line 2 is spoken by 'Carl', who is not in the cast"),
    (["Anna: The lava is close.", "Old Ben: ..."], "line 2 has a speaker label but no words"),
    (["Anna: The lava is close.", "Anna: We leave at dawn."], "speaker 'Old Ben' never speaks"),
])
def test_speakers(lines, reason):
    got = v.check_speakers(lines, ["Anna", "Old Ben"])
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("text, reason", [
    ("Etna wakes, and the town of Catania watches the red river.", None),
    ("Here the lava flows have reached the town of Catania tonight", "copies 8 or more words"),
])
def test_not_copied(text, reason):
    got = v.check_not_copied(text, [PASSAGE])
    assert got is None if reason is None else reason in got


def test_piece_normalises_line_breaks_inside_items():
    answer = answer_model(task("haiku", keywords=["lava"], lines=3, max_words=14, forbidden=[],
                               instruction="Write a haiku about lava on Mount Etna."),
                          sub("haiku").params)(lines=["lava glows\nat night", "Etna", "sleeps"])
    piece = piece_of(answer)
    assert piece.lines == ["lava glows", "at night", "Etna", "sleeps"]
    assert piece.text == "lava glows\nat night\nEtna\nsleeps"


def test_answer_schema_follows_the_task():
    poem = task("poem", keywords=["lava"], lines=6, stanzas=2, rhyme="couplets", title=True,
                forbidden=[], instruction="Write a poem about lava on Mount Etna.")
    schema = answer_model(poem, sub("poem").params).model_json_schema()
    assert list(schema["properties"]) == ["title", "stanzas"]
    assert schema["properties"]["stanzas"]["minItems"] == 2 == schema["properties"]["stanzas"]["maxItems"]
    ad = task("advertisement", keywords=["Etna"], min_words=30, max_words=60, title=False,
              forbidden=[], instruction="Write an advertisement for guided walks on Mount Etna.")
    schema = answer_model(ad, sub("advertisement").params).model_json_schema()
    assert list(schema["properties"]) == ["text"] and schema["properties"]["text"]["maxLength"] == 500


POEM = task("poem", keywords=["lava"], lines=4, stanzas=2, rhyme="couplets", title=True,
            forbidden=["fire"], instruction="Write a poem about lava on Mount Etna at night.")
GOOD_POEM = Piece("Etna at Night", [["The lava glows along the bay", "and turns the dark to day"],
                                    ["the town of Catania sleeps", "while the mountain weeps"]], "")


def _poem(title=GOOD_POEM.title, stanzas=GOOD_POEM.stanzas):
    return Piece(title, stanzas, "\n\n".join("\n".join(s) for s in stanzas))


@pytest.mark.parametrize("piece, reason", [
    (_poem(), None),
    (_poem(stanzas=[GOOD_POEM.stanzas[0] + GOOD_POEM.stanzas[1]]), "has 1 stanzas"),
    (_poem(stanzas=[GOOD_POEM.stanzas[0], ["the town sleeps", "while the mountain keeps", "on"]]),
     "has 5 lines, the task asks for 4"),
    (_poem(stanzas=[["The rock glows along the bay", "and turns the dark to day"],
                    GOOD_POEM.stanzas[1]]), "missing required keyword 'lava'"),
    (_poem(stanzas=[["The lava fire along the bay", "and turns the dark to day"],
                    GOOD_POEM.stanzas[1]]), "uses forbidden word 'fire'"),
    (_poem(stanzas=[GOOD_POEM.stanzas[0], ["the town of Catania sleeps", "while the mountain dreams"]]),
     "lines 3 and 4 do not rhyme"),
    (_poem(title=""), "title is empty"),
])
def test_check_piece_checks_every_stated_constraint(piece, reason):
    got = check_piece(POEM, sub("poem").params, piece, [PASSAGE, POEM.instruction])
    assert got is None if reason is None else reason in got


def test_check_piece_for_a_slogan():
    slogan = task("slogan", keywords=["Etna"], max_words=5, forbidden=[],
                  instruction="Write a slogan for guided tours of Mount Etna.")
    ok = Piece("", [["Climb Etna, touch the sky"]], "Climb Etna, touch the sky")
    assert check_piece(slogan, sub("slogan").params, ok, [PASSAGE]) is None
    long = Piece("", [["Climb Etna and touch the sky"]], "Climb Etna and touch the sky")
    assert "has 6 words, the task allows at most 5" in check_piece(slogan, sub("slogan").params,
                                                                   long, [PASSAGE])
    two = Piece("", [["Climb Etna", "touch sky"]], "Climb Etna\ntouch sky")
    assert "spans several lines" in check_piece(slogan, sub("slogan").params, two, [PASSAGE])


# -- the flow with a scripted teacher ---------------------------------------------------------

RHYMES = "day bay way play say ray stay clay gray sway tray pray".split()
SYLLABLES = ["ka", "lo", "mi", "ru", "te", "vo"]
STOP = set("about which there their these those where while other through".split())


def _filler(n):
    """n distinct made-up words (no trigram repeats, nothing copied from a source)."""
    return [SYLLABLES[i % 6] + SYLLABLES[i // 6 % 6] + SYLLABLES[i // 36 % 6] for i in range(n)]


def _source_words(prompt):
    body = prompt.split('"""')[1]
    seen = []
    for w in re.findall(r"\b[A-Za-z]{5,8}\b", body):
        if w.lower() not in STOP and w.lower() not in [s.lower() for s in seen]:
            seen.append(w)
    return seen


def write_task(prompt):
    """A valid task for whatever subcategory the instruct prompt asks for."""
    shape = json.loads(prompt.rsplit("Reply in JSON:", 1)[1])
    form = re.search(r"asks for a (.+?) and names its subject", prompt).group(1)
    words = _source_words(prompt)
    task = dict(shape)
    task["keywords"] = words[:len(shape["keywords"])]
    if "acrostic" in shape:
        task["acrostic"] = words[0].lower()
    if "speakers" in shape:
        task["speakers"] = ["Anna", "Ben", "Cleo"][:len(shape["speakers"])]
    task["forbidden"] = []
    task["instruction"] = f"Write a {form} about {' and '.join(task['keywords'])} for young readers."
    return task


def write_piece(prompt, bad):
    """A piece meeting the constraints stated in the respond prompt; `bad` leaves out the
    required keywords."""
    shape = json.loads(prompt.rsplit("Reply in JSON:", 1)[1])
    stated = re.findall(r"^- (.+)$", prompt, re.MULTILINE)
    keywords = [] if bad else [re.search(r"'(.+)'", c).group(1) for c in stated
                               if c.startswith("use the")]
    spell = next((c.rsplit(" ", 1)[1] for c in stated if c.startswith("the first letters")), None)
    cast = next((re.split(r", | and ", c.split("between ", 1)[1].split(";")[0]) for c in stated
                 if c.startswith("a dialogue")), None)
    piece = {"title": "Evening Song"} if "title" in shape else {}
    if "text" in shape:
        limit = next((c for c in stated if c.endswith(" words")), "")
        nums = [int(n) for n in re.findall(r"\d+", limit)]
        n = (nums[0] + nums[1]) // 2 if len(nums) == 2 else nums[0] - 1
        piece["text"] = " ".join(keywords + _filler(n - len(keywords)))
        return piece
    sizes = [len(s) for s in shape["stanzas"]] if "stanzas" in shape else [len(shape["lines"])]
    lines = []
    for i in range(sum(sizes)):
        first = f"{spell[i]}olden" if spell else "Softly"
        said = " ".join([first, *(keywords if i == 0 else []), RHYMES[i]])
        lines.append(f"{cast[i % len(cast)]}: {said}" if cast else said)
    if "stanzas" in shape:
        it = iter(lines)
        piece["stanzas"] = [[next(it) for _ in range(k)] for k in sizes]
    else:
        piece["lines"] = lines
    return piece


def creative_teacher():
    calls = {"instruct": 0, "respond": 0}
    seen: set[str] = set()

    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "instruction" in props and "\nRewrite the task" in prompt:
            task = json.loads(prompt.split("Task (JSON):\n", 1)[1].split("\nSuggestions:")[0])
            return task | {"forbidden": ["zebra"]}  # refinement adds a forbidden word
        if "instruction" in props:
            calls["instruct"] += 1
            task = write_task(prompt)
            if prompt not in seen:  # each item's first task forgets to name its form
                seen.add(prompt)
                task["instruction"] = f"Write something about {task['keywords'][0]} and its past."
            return task
        if "Follow every constraint exactly." in prompt:
            calls["respond"] += 1
            return write_piece(prompt, bad=calls["respond"] % 2 == 0)
        if "Passage:" in prompt:  # transformation: pass the passage on
            return {"text": prompt.split("Passage:\n", 1)[1].split("\n\nReply in JSON")[0]}
        return None

    return skill_teacher(reply)


def test_flow_checks_constraints_and_refinement_adds_one(corpus, tmp_path):
    summary, data, rejected = run_skill("creative_content", corpus, tmp_path / "out",
                                        creative_teacher(), num=2, flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 2
    names = {s.name for s in SKILL.spec.taxonomy}
    for rec in data:
        meta = rec["metadata"]
        assert meta["split"] == "creative_content" and meta["instruction_type"] in names
        assert meta["form"] == SKILL.spec.subcategory(meta["instruction_type"]).params["form"]
        # the edit was kept: the task and the stated constraints carry the added one
        assert meta["refinement"][0]["kept"] and meta["task"]["forbidden"] == ["zebra"]
        assert "do not use the word 'zebra'" in meta["constraints"]
        assert meta["validator_scores"]["words"] > 0
        roles = [m["role"] for m in rec["messages"]]
        assert roles == ["system", "user", "assistant"]
        user, answer = rec["messages"][1]["content"], rec["messages"][2]["content"]
        assert user.startswith(meta["task"]["instruction"]) and "\nConstraints:\n- " in user
        assert "- do not use the word 'zebra'" in user and meta["instruction"] == user
        for k in meta["task"]["keywords"]:
            assert k in answer
        assert "zebra" not in answer
        assert [k for k in meta["tokens"]["retried"] if k.startswith("instruct: instruction does")]
    reasons = [r["reason"] for r in rejected]
    # the task that forgets its form fails the cheap check and is written again
    retried = summary["this_run"]["retried_by_reason"]
    assert [k for k in retried if k.startswith("instruct: instruction does not ask for a")], retried
    assert any(r.startswith("missing required keyword") for r in reasons)
    assert all(r["stage"] == "validate" for r in rejected)


def test_a_script_keyword_must_be_spoken_not_a_label():
    t = task("dialogue_scene", keywords=["Etna"], speakers=["Etna", "Ben"], lines=4, title=False,
             forbidden=[], instruction="Write a dialogue scene between the volcano Etna and Ben.")
    params = sub("dialogue_scene").params
    said = ["Etna: I am waking up tonight.", "Ben: Then Etna should sleep again.",
            "Etna: The town is far below me.", "Ben: Catania is closer than you think."]
    assert check_piece(t, params, Piece("", [said], "\n".join(said)), [PASSAGE]) is None
    said[1] = "Ben: Then you should sleep again."
    assert "missing required keyword 'Etna'" in check_piece(t, params, Piece("", [said],
                                                            "\n".join(said)), [PASSAGE])
