"""Text modification: hand-written cases for every validator, the excerpt and knob choice, and
the flow with a scripted teacher (a correct one, and one that copies the input)."""

import json
import re

import pytest

from agents.items import Rejected, WorkItem
from agents.task import Draft
from agents.registry import load_skill
from agents.rag.validators import STOPWORDS
from agents.text_modification import inputs, measure, validators as v
from tests.conftest import TOPICS
from tests.skill_harness import run_skill, skill_teacher

TEXT = ("Mount Etna in Sicily rises about 3,357 metres and is one of the most active volcanoes "
        "in the world. The 1815 eruption of Mount Tambora in Indonesia caused the year without "
        "a summer, when crops failed across Europe.")
BEES = ("Honey bees live in colonies with a single queen. A worker bee lives about six weeks in "
        "summer, while the queen can live three to five years.")


# -- measurements -----------------------------------------------------------------------------

def test_measurements():
    assert measure.similarity(TEXT, TEXT.upper()) == 1.0
    assert measure.similarity(TEXT, "Bees make honey.") < 0.1
    assert measure.content_recall(TEXT, TEXT) == 1.0
    assert measure.content_recall(TEXT, "hello") == 0.0
    assert measure.longest_shared_run(TEXT, "It is one of the most active volcanoes known.") == 7
    assert measure.numbers("in 1815, 1816 and 3,357 m or 3 357 or 2,5 and 20 000") == {
        "1815", "1816", "3357", "25", "20000"}
    assert measure.number_words(BEES) == ["six", "three", "five"]
    assert measure.number_words("one of the twenty-five") == ["twenty", "five"]
    assert {"Etna", "Sicily", "Tambora", "Indonesia", "Europe"} <= measure.proper_nouns(TEXT)
    assert "Mount" in measure.proper_nouns(TEXT) and "The" not in measure.proper_nouns(TEXT)
    assert measure.polarity("a wonderful and excellent day", "positive") == 2
    assert measure.polarity("a wonderful and excellent day", "negative") == -2
    assert measure.banned_words(BEES, 2) == ["live", "queen"]  # most frequent, first seen first
    assert measure.long_words("Volcanoes erupt rarely", 7, set()) == (1, 3)
    assert measure.long_words("Indonesia is far", 7, {"Indonesia"}) == (0, 2)


def test_excerpts_are_whole_sentences_within_the_limit_and_seeded():
    passage = TOPICS["volcanoes.md"]
    units = inputs.sentence_units(passage)
    assert units[0].startswith("A volcano is") and not any(u.startswith("#") for u in units)
    seen = set()
    for seed in range(12):
        text = inputs.pick_excerpt(passage, seed, 300)
        assert text == inputs.pick_excerpt(passage, seed, 300)  # deterministic
        assert 80 <= len(text) <= 300
        assert all(s in units for s in measure.SENTENCE_END.split(text))
        seen.add(text)
    assert len(seen) >= 2
    # a preference wins when any window satisfies it
    assert all("1815" in inputs.pick_excerpt(passage, s, 300, prefer=lambda t: "1815" in t)
               for s in range(5))
    assert inputs.pick_excerpt("Too short.", 1) is None
    long_sentence = "word " * 200 + "end."
    assert inputs.pick_excerpt(long_sentence, 1, 100).endswith(" ...")
    # a fragment the sentence split cut off stays with its sentence: no words go missing
    text = "# Railways\n\nStephenson built the engine Locomotion No. 1. In 1830 a line opened."
    assert inputs.sentence_units(text) == ["Stephenson built the engine Locomotion No. 1.",
                                           "In 1830 a line opened."]


def test_knobs_are_drawn_from_params_and_rules_must_apply():
    params = {"cases": ["upper", "lower", "title"]}
    drawn = {inputs.choose_knobs("capitalization", params, TEXT, s)["case"] for s in range(30)}
    assert drawn == {"upper", "lower", "title"}
    rules = {"rules": ["numbers_as_digits", "numbers_as_words"]}
    assert inputs.choose_knobs("data_normalization", rules, "It took 12 days to build it.", 1)[
        "rule"] == "numbers_as_words"
    assert inputs.choose_knobs("data_normalization", rules, "It took twelve days, not ten.", 1)[
        "rule"] == "numbers_as_digits"
    with pytest.raises(Rejected, match="nothing for a data_normalization rule"):
        inputs.choose_knobs("data_normalization", rules, "No numbers in this text at all.", 1)
    vocab = {"rules": ["banned_words"], "banned": 3}
    assert inputs.choose_knobs("vocabulary_limited_rewriting", vocab, TEXT, 1)["banned"] == \
        measure.banned_words(TEXT, 3)
    assert inputs.constraint_line({"rule": "banned_words", "banned": ["mount", "etna"]}) == \
        'Do not use these words: "mount", "etna".'
    assert "at most 7 letters" in inputs.constraint_line({"rule": "short_words", "max_letters": 7})
    assert inputs.knob_request("translate", {"language": "German"}) == "a translation into German"
    assert inputs.knob_request("code_switching", {"language": "German"}) == \
        "mixing in phrases of German"


def test_a_passage_without_a_usable_excerpt_is_rejected_before_any_call():
    skill = load_skill("text_modification")
    item = WorkItem(id="x", skill="text_modification", subcategory="paraphrase",
                    transformation="news_brief", seed_chunk_id="c", seed=3)
    draft = Draft(item=item, sub=SPEC.subcategory("paraphrase"), chunk=None,
                  passage="Breaking news. Volcano erupts.")
    with pytest.raises(Rejected) as caught:
        skill.setup(draft)
    assert caught.value.stage == "transform" and "no run of whole sentences" in caught.value.reason
    assert caught.value.detail == "30 characters, 0 sentences"
    draft.passage = TOPICS["volcanoes.md"]
    knobs = skill.setup(draft)
    assert knobs == {} and draft.extra["input_text"] in " ".join(draft.passage.split())
    values = skill._values(draft)
    assert values["passage"] == draft.extra["input_text"] and values["shape"] == \
        '{"instruction": "..."}'


# -- cheap checks on tasks --------------------------------------------------------------------

@pytest.mark.parametrize("instruction, cue, knob, reason", [
    ("Please rewrite this text in upper case letters.", "rewrit|capital|case", "upper", None),
    ("Translate the following into German for a visitor.", "translat", "German", None),
    ("Do it.", "", None, "too short"),
    ("Make it nicer to read for everyone " * 12, "", None, "too long"),
    ("Summarize the text in one line.", "paraphras|reword", None, "does not ask for paraphrase"),
    ("Please rewrite this text with different capitals.", "rewrit", "upper",
     "does not ask for upper case"),
    ("Translate the text for a visitor from abroad.", "translat", "German",
     "does not name the language German"),
    ("Paraphrase: Mount Etna in Sicily rises about 3,357 metres and is one of the most active",
     "paraphras", None, "repeats the input text (16 words)"),
    ("Mount Etna in Sicily rises about 3,357 metres and is one of the most active volcanoes",
     "annotat", None, "repeats the input text"),  # a copied text, not a wrong kind of request
])
def test_instruction_checks(instruction, cue, knob, reason):
    request = "upper case" if knob == "upper" else ""
    result = v.check_instruction(instruction, TEXT, cue, knob, request, "paraphrase")
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("keyword, replacement, instruction, reason", [
    ("Etna", "Vesuvius", "Replace Etna with Vesuvius.", None),
    ("Hekla", "Vesuvius", "Replace Hekla with Vesuvius.", "does not occur in the input"),
    ("Etna", "etna", "Replace Etna with etna.", "replacement is the keyword itself"),
    ("Etna", "Mount Etna", "Replace Etna with Mount Etna.", "contains the keyword"),
    ("Etna", "Sicily", "Replace Etna with Sicily.", "already occurs in the input"),
    ("Etna", "Vesuvius", "Replace the volcano's name.", "does not name both"),
])
def test_keyword_task_checks(keyword, replacement, instruction, reason):
    result = v.check_keyword_task(TEXT, instruction, keyword, replacement)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("remove, instruction, reason", [
    ("in Sicily", 'Remove "in Sicily" from the text.', None),
    ("when crops failed across Europe.", "Delete the clause when crops failed across Europe.",
     None),
    ("in Hawaii", 'Remove "in Hawaii".', "does not occur in the input"),
    (TEXT[:150], f'Remove "{TEXT[:150]}".', "most of the input"),
    ("in Sicily", "Remove the place name.", "does not name the item"),
])
def test_removal_task_checks(remove, instruction, reason):
    result = v.check_removal_task(TEXT, instruction, remove)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("hypothesis, reason", [
    ("Mount Etna is higher than three thousand metres.", None),
    ("Etna is tall.", "too short"),
    ("Honey bees live in large colonies.", "not about the input"),
    ("The 1815 eruption of Mount Tambora in Indonesia", "copies the input"),
])
def test_hypothesis_checks(hypothesis, reason):
    result = v.check_hypothesis(TEXT, hypothesis)
    assert result == reason if reason is None else reason in result


# -- validators on outputs --------------------------------------------------------------------

PARAPHRASE = ("With a height of roughly 3,357 metres, Sicily's Etna ranks among the planet's "
              "most restless volcanoes. When Indonesia's Tambora blew up in 1815, harvests "
              "across Europe collapsed and that year had no summer.")


@pytest.mark.parametrize("output, reason", [
    (PARAPHRASE, None),
    (TEXT, "copy of the input"),
    (TEXT.replace("rises about", "is about"), "keeps the input's wording"),
    ("Bees and wasps are busy insects that visit many flowers every single summer day.",
     "lost the input's content"),
    ("Etna in Sicily: 3,357 metres. Tambora in Indonesia: 1815 eruption, crops failed.",
     "length"),
])
def test_paraphrase(output, reason):
    result = v.check_paraphrase(TEXT, output)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    ("Mount Etna is a big volcano in Sicily. It is very active. In 1815 a volcano in Indonesia "
     "blew up. Crops failed in Europe.", None),
    (TEXT, "copy of the input"),
    ("Bees are small.", "lost the input's content"),
    (TEXT.replace("rises about", "ascends approximately").replace("active", "tempestuous"),
     "neither shorter nor plainer"),
    (TEXT + " Etna, the most studied of them, is watched by an observatory on its slopes, and "
     "Tambora is watched too.", "much longer"),
])
def test_simplify(output, reason):
    result = v.check_simplified(TEXT, output)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    (TEXT + " Etna has erupted many times in recorded history, and its lava flows have shaped "
     "the towns around it. Tambora's ash cooled the whole planet for a year.", None),
    (TEXT + " It is big.", "only 1.0"),
    ("Volcanoes are openings in a planet's crust. " * 8, "dropped the input's content"),
])
def test_expand(output, reason):
    result = v.check_expanded(TEXT, output)
    assert result == reason if reason is None else reason in result


FRENCH = ("L'Etna en Sicile s'élève à environ 3 357 mètres et est l'un des volcans les plus "
          "actifs du monde. L'éruption du Tambora en Indonésie en 1815 a provoqué une année "
          "sans été, quand les récoltes ont échoué dans toute l'Europe.")


@pytest.mark.parametrize("output, language, reason", [
    (FRENCH, "French", None),
    (TEXT, "French", "copy of the input"),
    ("Mount Etna in Sicily is very tall and it is in the world of volcanoes.", "French",
     "still English"),
    (FRENCH, "German", "is not German"),
    (FRENCH.replace("3 357", "trois mille"), "French", "dropped the number(s) 3357"),
])
def test_translation(output, language, reason):
    result = v.check_translation(TEXT, output, language)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, fmt, reason", [
    ("- Mount Etna in Sicily rises about 3,357 metres\n- It is one of the most active volcanoes"
     "\n- The 1815 eruption of Mount Tambora caused a year without a summer", "bullet_list", None),
    ("1. Mount Etna rises 3,357 metres in Sicily\n2. Tambora erupted in 1815 in Indonesia\n"
     "3. Crops failed across Europe", "numbered_list", None),
    ('```json\n{"volcano": "Mount Etna", "location": "Sicily", "height_m": 3357, '
     '"eruption": {"volcano": "Mount Tambora", "year": 1815, "effect": "year without a summer, '
     'crops failed across Europe"}}\n```', "json", None),
    ("| volcano | fact |\n|---|---|\n| Mount Etna | Sicily, 3,357 metres, most active |\n"
     "| Mount Tambora | Indonesia, 1815 eruption, year without a summer, crops failed in Europe |",
     "table", None),
    (TEXT, "bullet_list", "not a bullet list (0 bullet lines)"),
    ("1. Etna in Sicily\n3. Tambora in Indonesia", "numbered_list", "does not count"),
    ('{"volcano": "Etna", }', "json", "not valid JSON"),
    ("[]", "json", "non-empty"),
    ("| volcano | fact |\n| Etna | Sicily |", "table", "no |---| separator"),
    ("| volcano | fact |\n|---|---|\n| Etna | Sicily | tall |", "table", "equal columns"),
    ("- Bees make honey\n- Bees dance", "bullet_list", "dropped the input's content"),
])
def test_format(output, fmt, reason):
    result = v.check_format(TEXT, output, fmt)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, sentiment, reason", [
    ("Mount Etna in Sicily rises a magnificent 3,357 metres and is one of the most impressive, "
     "active volcanoes in the world.", "positive", None),
    ("Sadly, Tambora's terrible eruption in Indonesia caused a grim year when crops failed "
     "across Europe.", "negative", None),
    (TEXT, "positive", "copy of the input"),
    ("Mount Etna in Sicily rises about 3,357 metres.", "positive", "not more positive than the "
     "input (tone score -1 -> 0)"),
    ("What a wonderful and excellent day for a picnic with friends!", "positive",
     "left the input's subject"),
])
def test_sentiment(output, sentiment, reason):
    result = v.check_sentiment(TEXT, output, sentiment)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    (TEXT.replace("Sicily", "Sicily [an Italian island]").replace(
        "1815", "1815 [the largest eruption in recorded history]"), None),
    (TEXT, "no notes in square brackets"),
    ("Etna [a volcano] is tall.", "does not keep the original text"),
])
def test_annotate(output, reason):
    result = v.check_annotated(TEXT, output)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    (TEXT.replace("Etna", "Vesuvius"), None),
    (TEXT.replace("Etna", "Vesuvius", 0), "still contains the keyword 'Etna'"),
    (TEXT.replace("Etna", "it"), "lacks the replacement 'Vesuvius'"),
    ("Vesuvius is a volcano.", "changes more than the keyword"),
])
def test_keyword_replaced(output, reason):
    result = v.check_keyword_replaced(TEXT, output, "Etna", "Vesuvius")
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    (TEXT.replace(" in Sicily", ""), None),
    (TEXT, "not shorter"),
    (TEXT.replace("The 1815", "1815"), "still contains the item"),
    ("Mount Etna rises high.", "changes more than the removed item"),
])
def test_removed(output, reason):
    result = v.check_removed(TEXT, output, "in Sicily", )
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, case, reason", [
    (TEXT.upper(), "upper", None),
    (TEXT.lower(), "lower", None),
    (TEXT.title(), "title", None),
    (TEXT, "upper", "copy of the input"),
    (TEXT.upper().replace("ETNA", "Etna"), "upper", "lower-case letters"),
    (TEXT.lower().replace("etna", "Etna"), "lower", "capital letters"),
    (TEXT.upper(), "title", "all upper case"),
    (TEXT.title().replace("Metres", "metres"), "title", "'metres' does not start"),
    ("MOUNT ETNA IS TALL.", "upper", "changes the words"),
    ("...", "upper", "no letters"),
])
def test_case(output, case, reason):
    result = v.check_case(TEXT, output, case)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, markup, reason", [
    (TEXT.replace("Mount Etna", "**Mount Etna**").replace("1815", "**1815**"), "bold", None),
    (TEXT.replace("Sicily", "*Sicily*").replace("Europe", "_Europe_"), "italic", None),
    (TEXT, "bold", "no bold markup"),
    (TEXT.replace("Mount Etna", "**Mount Etna**"), "italic", "no italic markup"),
    ("**Etna** is tall.", "bold", "changes the words"),
    (f"**{TEXT}**", "bold", "covers most of the text"),
])
def test_styled(output, markup, reason):
    result = v.check_styled(TEXT, output, markup)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    ("Come and see Etna! Sicily's giant stands 3,357 metres tall, one of the liveliest volcanoes "
     "anywhere, and unlike Tambora in 1815 it will not steal your summer.", None),
    (TEXT, "copy of the input"),
    ("Dear friends, " + TEXT, "keeps the input's wording"),
    ("Dear friends, come to our bakery for fresh bread today!", "lost the input's content"),
])
def test_rewritten(output, reason):
    result = v.check_rewritten(TEXT, output)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("text, output, rule, reason", [
    (BEES, BEES.replace("six", "6").replace("three", "3").replace("five", "5"),
     "numbers_as_digits", None),
    (TEXT, TEXT.replace("3,357", "three thousand three hundred fifty-seven").replace(
        "1815", "eighteen fifteen"), "numbers_as_words", None),
    (BEES, BEES, "numbers_as_digits", "copy of the input"),
    (BEES, BEES.replace("six", "6"), "numbers_as_digits", "number words remain: three, five"),
    (BEES, BEES.replace("six", "several").replace("three", "a few").replace("five", "many"),
     "numbers_as_digits", "no digits"),
    (TEXT, TEXT.replace("1815", "eighteen fifteen"), "numbers_as_words", "digits remain: 3357"),
    (TEXT, TEXT.replace("3,357", "many").replace("1815", "a past"), "numbers_as_words",
     "no numbers were written out in words"),
    (BEES, "Bees: 6 weeks, queens 3 to 5 years.", "numbers_as_digits",
     "changed more than the numbers"),
])
def test_normalized(text, output, rule, reason):
    result = v.check_normalized(text, output, rule)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    (PARAPHRASE, None),
    (TEXT.replace("Sicily", "Italy"), "copies a"),
    ("Volcanoes are interesting things to learn about.", "lost the input's content"),
])
def test_reworded(output, reason):
    result = v.check_reworded(TEXT, output, 4)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, language, reason", [
    ("Mount Etna in Sicily rises about 3,357 metres y es uno de los volcanes más activos del "
     "mundo. The 1815 eruption of Tambora caused a year without summer.", "Spanish", None),
    (TEXT, "Spanish", "no Spanish phrases"),
    ("El Etna en Sicilia es uno de los volcanes más activos del mundo y la erupción del Tambora "
     "causó un año sin verano.", "Spanish", "little English left"),
    ("I went to the market y compré pan para la cena.", "Spanish", "left the input's subject"),
])
def test_code_switched(output, language, reason):
    result = v.check_code_switched(TEXT, output, language)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, reason", [
    ("[NAME] in [PLACE] rises about [NUMBER] metres and is one of the most active volcanoes in "
     "the world. The [DATE] eruption of [NAME] in [PLACE] caused the year without a summer, "
     "when crops failed across [PLACE].", None),
    (TEXT, "no [placeholders]"),
    (TEXT.replace("Etna", "[NAME]"), "still shows the number(s) 1815, 3357"),
    ("[NAME] in Sicily rises about [NUMBER] metres and is one of the most active volcanoes. "
     "The [DATE] eruption of Mount Tambora in Indonesia caused the year without a summer, "
     "when crops failed across Europe.", "still names"),
    ("[NAME] [PLACE] [NUMBER].", "dropped the rest of the text"),
])
def test_obfuscated(output, reason):
    result = v.check_obfuscated(TEXT, output)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("hypothesis, label, explanation, reason", [
    ("Mount Etna is an active volcano in Sicily.", "entailment",
     "The text says Etna in Sicily is one of the most active volcanoes.", None),
    ("Mount Etna is the tallest mountain in Asia.", "contradiction",
     "The text places Etna in Sicily, which is in Europe.", None),
    ("Mount Etna is an active volcano.", "maybe", "It is hard to tell from this.",
     "label 'maybe' is not"),
    ("Mount Etna is an active volcano.", "entailment", "Yes it is.", "explanation too short"),
    ("Geologists love hiking around beautiful Hawaiian craters.", "entailment",
     "The text talks about volcanoes generally.", "entailment label, but only"),
])
def test_entailment(hypothesis, label, explanation, reason):
    result = v.check_entailment(TEXT, hypothesis, label, explanation)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("output, knobs, reason", [
    ("Etna in Sicily is about 3,357 m high and is one of the most lively peaks on Earth. When "
     "Tambora blew in 1815, Europe lost its crops and a whole summer.",
     {"rule": "short_words", "max_letters": 7}, None),
    (TEXT, {"rule": "short_words", "max_letters": 7}, "copy of the input"),
    ("Etna in Sicily is one of the most restless volcanoes, a spectacular phenomenon.",
     {"rule": "short_words", "max_letters": 7}, "words are longer than 7 letters"),
    ("Etna in Sicily stands 3,357 m high, among the liveliest peaks on Earth.",
     {"rule": "banned_words", "banned": ["mount", "volcanoes"]}, None),
    ("Mount Etna stands 3,357 m high, among the liveliest peaks on Earth.",
     {"rule": "banned_words", "banned": ["mount", "volcanoes"]}, "banned word(s): mount"),
    ("Bread is baked in ovens.", {"rule": "banned_words", "banned": ["mount", "volcanoes"]},
     "lost the input's content"),
])
def test_vocabulary(output, knobs, reason):
    result = v.check_vocabulary(TEXT, output, knobs)
    assert result == reason if reason is None else reason in result


# -- the flow ---------------------------------------------------------------------------------

SPEC = load_skill("text_modification").spec
DESCRIPTIONS = {s.description: s.name for s in SPEC.taxonomy}
# the scripted writer's instruction per type: starts with a tag the scripted answerer reads back
INSTRUCTIONS = {
    "paraphrase": "Paraphrase the text in different words.",
    "simplify": "Simplify the text for a beginner.",
    "expand": "Expand the text with more detail.",
    "translate": "Translate the text into {language}.",
    "format": "Format the text as {request}.",
    "sentiment_change": "Change the tone: make it {sentiment}.",
    "annotate": "Annotate the text with short notes.",
    "content_rewriting": "Rewrite the content as a short letter.",
    "capitalization": "Capitalization: put the text in {case} case.",
    "styling": "Styling: apply {markup} to the key terms.",
    "data_normalization": "Normalize the numbers by {request}.",
    "plagiarism_rewording": "Reword the text so nothing is copied.",
    "code_switching": "Code switch: mix in phrases of {language}.",
    "obfuscation": "Obfuscate the text by masking names and numbers.",
    "vocabulary_limited_rewriting": "Rewrite the text using only limited vocabulary.",
}


def _source(prompt: str) -> str:
    return prompt.split('"""')[1].strip()


def _writer(prompt: str) -> dict:
    first = prompt.split("\nWrite ONE", 1)[1].split("\n", 1)[0]
    name = DESCRIPTIONS[first.split(": ", 1)[1]]
    text = _source(prompt)
    request = m.group(1) if (m := re.search(r"must ask for (.+)\.\n", prompt)) else ""
    head = (request.split() or [""])[0]
    knob = {"request": request, "language": request.rsplit(" ", 1)[-1],
            "sentiment": request.split()[1] if request.startswith("a ") else "",
            "case": head, "markup": head}
    if name == "keyword_replacement":
        keyword = re.findall(r"\b[a-z]{5,}\b", text)[0]
        return {"instruction": f'Replace "{keyword}" with "zebra" everywhere.',
                "keyword": keyword, "replacement": "zebra"}
    if name == "text_removal":
        item = " ".join(text.split()[2:6])
        return {"instruction": f'Remove "{item}" from the text.', "remove": item}
    if name == "textual_entailment":
        words = re.findall(r"\b[a-z]{5,}\b", text)[:4]
        return {"instruction": "Does the text entail the hypothesis?",
                "hypothesis": f"The {words[0]} concerns {', '.join(words[1:])} in some way."}
    return {"instruction": INSTRUCTIONS[name].format(**knob)}


def _chunks(text: str, size: int = 8) -> list[str]:
    ws = text.split()
    return [" ".join(ws[i:i + size]) for i in range(0, len(ws), size)]


def _answer(prompt: str) -> dict:
    """A correct modification for each type, computed from the respond prompt."""
    instruction = prompt.split("\n", 1)[0]
    text = _source(prompt)
    reverse = " ".join(reversed(text.split()))
    if instruction.startswith("Does the text entail"):
        return {"label": "entailment", "explanation": "The text mentions each of these words."}
    if m := re.match(r'Replace "(\w+)" with "zebra"', instruction):
        return {"text": re.sub(rf"\b{m.group(1)}\b", "zebra", text, flags=re.I)}
    if m := re.match(r'Remove "(.+)" from', instruction):
        return {"text": text.replace(m.group(1), "").replace("  ", " ")}
    kind = instruction.split()[0].rstrip(":")
    if kind == "Paraphrase":
        return {"text": reverse}
    if kind == "Simplify":
        return {"text": " ".join(text.split()[: len(text.split()) * 2 // 3]) + "."}
    if kind == "Expand":
        return {"text": f"{text} Moreover, {reverse}"}
    if kind == "Translate":
        language = instruction.rstrip(".").rsplit(" ", 1)[-1]
        fws = sorted(measure.FUNCTION_WORDS[language])
        content = [w for w in text.split() if w.lower().strip(".,") not in STOPWORDS]
        return {"text": " ".join(f"{fws[i % len(fws)]} {w}" for i, w in enumerate(content))}
    if kind == "Format":
        parts = _chunks(text)
        if "bullet" in instruction:
            return {"text": "\n".join(f"- {p}" for p in parts)}
        if "numbered" in instruction:
            return {"text": "\n".join(f"{i}. {p}" for i, p in enumerate(parts, 1))}
        if "JSON" in instruction:
            return {"text": json.dumps({"points": parts})}
        return {"text": "| part | content |\n|---|---|\n" + "\n".join(
            f"| {i} | {p} |" for i, p in enumerate(parts, 1))}
    if kind == "Change":
        cue = ("It is wonderful and excellent." if "positive" in instruction
               else "It is terrible and disappointing.")
        return {"text": f"{text} {cue}"}
    if kind == "Annotate":
        return {"text": text.replace(" ", " [a note] ", 1)}
    if kind == "Rewrite" and "letter" in instruction:
        return {"text": f"Dear reader, {reverse}"}
    if kind == "Capitalization":
        case = instruction.split(" in ")[1].split()[0]
        return {"text": {"upper": text.upper(), "lower": text.lower(), "title": text.title()}[case]}
    if kind == "Styling":
        mark = "**" if "bold" in instruction else "*"
        first = re.search(r"[A-Za-z]{4,}", text).group(0)
        return {"text": text.replace(first, f"{mark}{first}{mark}", 1)}
    if kind == "Normalize":
        if "digits" in instruction:
            out = text
            for i, w in enumerate(["two", "three", "four", "five", "six", "seven", "eight",
                                   "nine", "ten"], 2):
                out = re.sub(rf"\b{w}\b", str(i), out, flags=re.I)
            return {"text": out}
        return {"text": re.sub(r"\d[\d,]*", "seven", text)}
    if kind == "Reword":
        return {"text": reverse}
    if kind == "Code":
        language = instruction.rstrip(".").rsplit(" ", 1)[-1]
        fws = sorted(measure.FUNCTION_WORDS[language])
        return {"text": f"{text} {fws[0]} {fws[1]} {fws[2]}"}
    if kind == "Obfuscate":
        out = text
        for name in measure.proper_nouns(text):
            out = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "[NAME]", out)
        return {"text": re.sub(r"\d[\d,]*", "[NUMBER]", out)}
    if kind == "Rewrite":  # vocabulary limits: the flow's constraint line follows the instruction
        limit = prompt.split("\n")[1]
        if limit.startswith("Do not use these words"):
            out = text
            for word in re.findall(r'"(\w+)"', limit):
                out = re.sub(rf"\b{word}\b", "", out, flags=re.I)
            return {"text": " ".join(out.split())}
        return {"text": " ".join(w for w in text.split() if len(w.strip(".,")) <= 7)}
    raise AssertionError(f"unscripted instruction {instruction!r}")


def scripted(copying: bool = False):
    def reply(prompt, schema):
        props = schema.get("properties", {})
        if prompt.startswith("Rewrite the passage below"):  # transformation agents: unchanged
            return {"text": _source(prompt)}
        if "instruction" in props:
            return _writer(prompt)
        if "label" in props:
            return ({"label": "neutral", "explanation": "Hard to say so."} if copying
                    else _answer(prompt))
        if "text" in props:
            return {"text": _source(prompt)} if copying else _answer(prompt)
        return None
    return reply


def test_flow_accepts_correct_modifications_of_every_type(corpus, tmp_path):
    summary, data, rejected = run_skill("text_modification", corpus, tmp_path / "out",
                                        skill_teacher(scripted()), num=18, max_attempts=18,
                                        flow={"refine_rounds": 0})
    # the plan deals the whole taxonomy first; a correct teacher passes every type's validators
    # and loses items only to the near-duplicate gate (which runs after validation): four tiny
    # seed documents give few distinct excerpts, and the input text dominates the embedding
    assert all(r["stage"] == "dedup" for r in rejected), \
        [(r["subcategory"], r["stage"], r["reason"]) for r in rejected if r["stage"] != "dedup"]
    assert {r["metadata"]["instruction_type"] for r in data} | {
        r["subcategory"] for r in rejected} == {s.name for s in SPEC.taxonomy}
    assert len(data) >= 4
    # the documents' words without their markup: an excerpt may run across two paragraphs
    docs = [" ".join(measure.words(re.sub(r"<[^>]+>", " ", text))) for text in TOPICS.values()]
    for rec in data:
        meta, messages = rec["metadata"], rec["messages"]
        assert meta["split"] == "text_modification"
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        user, text = messages[1]["content"], meta["input_text"]
        assert meta["instruction"] == user
        assert user.startswith(meta["task"]["instruction"]) and f"Text:\n{text}" in user
        assert len(text) <= SPEC.subcategory(meta["instruction_type"]).params.get(
            "max_chars", 500)
        if meta["transformation"] == "identity":  # cut from the seed, not rewritten by a model
            assert any(" ".join(measure.words(text)) in doc for doc in docs), text
        knobs = meta["knobs"]
        kind = meta["instruction_type"]
        if kind == "capitalization":
            assert knobs["case"] in {"upper", "lower", "title"}
        if kind == "translate":
            assert knobs["language"] in user
        if kind == "vocabulary_limited_rewriting" and knobs["rule"] == "banned_words":
            assert "Do not use these words" in user
        if kind == "textual_entailment":
            assert "Hypothesis: " in user and messages[2]["content"].endswith(
                "Answer: entailment")
        else:
            assert messages[2]["content"] != text
        assert "similarity" in meta["validator_scores"] or kind == "textual_entailment"


EXPECTED_COPY_REASON = {
    "paraphrase": "output is a copy", "simplify": "output is a copy",
    "expand": "expanded text is only 1.00x", "translate": "output is a copy",
    "format": "output is not", "sentiment_change": "output is a copy",
    "annotate": "no notes in square brackets", "keyword_replacement": "output still contains",
    "text_removal": "output is not shorter", "capitalization": "output is a copy",
    "styling": "output has no", "content_rewriting": "output is a copy",
    "data_normalization": "output is a copy", "plagiarism_rewording": "output copies a",
    "code_switching": "no ", "obfuscation": "output has no [placeholders]",
    "textual_entailment": "explanation too short",
    "vocabulary_limited_rewriting": "output is a copy",
}


def test_flow_rejects_a_teacher_that_copies_the_input(corpus, tmp_path):
    summary, data, rejected = run_skill("text_modification", corpus, tmp_path / "out",
                                        skill_teacher(scripted(copying=True)), num=1,
                                        max_attempts=18, flow={"refine_rounds": 0})
    assert data == [] and len(rejected) == 18
    # the plan deals the whole taxonomy first: every type met the copy with its own reason
    assert {r["subcategory"] for r in rejected} == set(EXPECTED_COPY_REASON)
    for r in rejected:
        assert r["stage"] == "validate", (r["subcategory"], r["reason"])
        assert r["reason"].startswith(EXPECTED_COPY_REASON[r["subcategory"]]), \
            (r["subcategory"], r["reason"])
