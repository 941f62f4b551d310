"""The RAG skill without a model: its data, rendered prompts, plan and validators; and how
items that share a transformation are charged for it, on a scripted teacher."""

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from agents.flow import FlowContext, FlowSettings
from agents.items import Candidate, Rejected, WorkItem
from agents.rag import skill as rag
from agents.rag import validators as v
from agents.registry import UnknownSkill, load_skill, skill_names
from agents.spec import Subcategory
from retrieval import Chunk
from tests.fakes import ScriptedTeacher, answers_yes, rag_replies


def chunk(i: int, doc: str = "a.md") -> Chunk:
    return Chunk(id=f"c{i:03d}", doc_path=doc, kind="markdown", start=i * 10, end=i * 10 + 9,
                 text=f"text {i}")


def test_registry_knows_rag_and_refuses_unknown():
    assert "rag" in skill_names()
    skill = load_skill("rag")
    assert skill.spec.split == "rag"
    assert len(skill.spec.taxonomy) >= 8
    assert any(not s.answerable for s in skill.spec.taxonomy)
    with pytest.raises(UnknownSkill, match="available: .*rag"):
        load_skill("nope")


def test_every_template_the_spec_names_renders():
    skill = load_skill("rag")
    for t in skill.spec.transformations:
        if t.template:
            assert "Seed passage body" in skill.render(t.template, passage="Seed passage body")


def test_instruct_prompt_carries_type_description_passages_and_anchor():
    skill = load_skill("rag")
    multi = skill.spec.subcategory("multi_hop")
    prompt = skill.render("instruct.j2", subcategory=multi, passages=["ALPHA text", "BETA text"],
                          anchor=None)
    assert multi.description in prompt
    assert 'Source 1:\n"""\nALPHA text\n"""' in prompt and 'Source 2:\n"""\nBETA text' in prompt
    assert '{"question": "..."}' in prompt and "question that the texts above answer." in prompt
    single = skill.spec.subcategory("single_fact")
    prompt = skill.render("instruct.j2", subcategory=single, passages=["ALPHA"], anchor="apt-get")
    assert 'question about "apt-get" that the text above answers.' in prompt
    assert prompt.endswith('Reply in JSON: {"about": "apt-get", "question": "..."}')
    unanswerable = skill.spec.subcategory("unanswerable")
    prompt = skill.render("instruct.j2", subcategory=unanswerable, passages=["ALPHA"],
                          anchor="apt-get")
    assert "but whose answer it does not give" in prompt and "text above answers" not in prompt


def _index(texts: list[str]):
    import faiss
    import numpy as np

    from retrieval import CorpusIndex

    flat = faiss.IndexFlatIP(4)
    flat.add(np.zeros((len(texts), 4), dtype="float32"))
    chunks = [Chunk(id=f"c{i}", doc_path="a.md", kind="markdown", start=0, end=len(t), text=t)
              for i, t in enumerate(texts)]
    return CorpusIndex(chunks, [], flat, embedder=None)


CORPUS = [
    "Debian keeps packages in repositories. The system updates packages with apt-get upgrade.",
    "Packages are signed. The system checks every package against the keyring in "
    "/etc/apt/trusted.gpg.d before it installs anything.",
    "The installer partitions disks. The system writes its bootloader, GRUB, to the disk.",
    "See www.debian.org for more. Packages and the system are described there, usually.",
]


def test_key_terms_prefer_names_rare_in_the_corpus_and_skip_filler():
    from agents.rag.anchors import key_terms

    index = _index(CORPUS)
    terms = key_terms(CORPUS[1], index)
    # names and technical tokens (a path, a capitalized word mid-text) come first
    assert terms[0] == "etc/apt/trusted.gpg.d" and "keyring" in key_terms(CORPUS[1], index, k=9)
    assert key_terms(CORPUS[0], index)[0] == "apt-get"
    # function words and words every chunk has are never the subject
    assert not {"the", "against", "before", "every"} & set(terms)
    assert "system" not in key_terms(CORPUS[0], index)[:4]
    # no web addresses, no adverbs, no numbers, nothing absent from `within`
    assert "www.debian.org" not in key_terms(CORPUS[3], index)
    assert "usually" not in key_terms(CORPUS[3], index)
    assert key_terms(CORPUS[2], index, within="The bootloader is GRUB.") == ["grub",
                                                                             "bootloader"]
    assert key_terms("1234 and of the", index) == []


def test_pick_anchor_is_deterministic_per_item_and_spreads_over_the_terms():
    from agents.rag.anchors import key_terms, pick_anchor

    index = _index(CORPUS)
    text = CORPUS[0] + " " + CORPUS[2]
    assert pick_anchor(text, index, seed=5) == pick_anchor(text, index, seed=5)
    drawn = {pick_anchor(text, index, seed=s) for s in range(40)}
    assert drawn == set(key_terms(text, index)) == {"apt-get", "grub"}  # names only, when two
    assert pick_anchor("a an the", index, seed=1) is None


def test_anchored_question_schema_opens_with_the_anchor_but_accepts_a_rewording():
    from agents.flow import anchored_question

    model = anchored_question("apt-get")
    schema = model.model_json_schema()
    assert list(schema["properties"]) == ["about", "question"]
    assert schema["properties"]["about"]["const"] == "apt-get"
    assert schema["required"] == ["about", "question"]
    assert model.model_validate({"about": "APT", "question": "What does apt-get do?"}).question
    assert model.model_validate({"question": "What does apt-get do?"}).question
    assert anchored_question("apt-get") is model


@pytest.mark.parametrize("anchor, reply, question", [
    # the server stops at the question mark (the fake does as llama-server does); the reply is
    # closed as written, so what the teacher ran on into is never generated or kept
    ("apt", '{"about": "apt", "question": "What does \\"apt\\" install? It installs',
     'What does "apt" install?'),
    (None, '{"question": "List the tools the apt suite ships with."}',
     "List the tools the apt suite ships with."),
    # an anchor with a question mark of its own: no stop, or `about` would be cut
    ("why?", '{"about": "why?", "question": "What does why? do? It"}', "What does why? do? It"),
])
def test_a_question_reply_ends_at_its_question_mark(anchor, reply, question):
    from agents.flow import Question, anchored_question
    from models import ChatMessage, chat_json

    output = anchored_question(anchor) if anchor else Question
    teacher = ScriptedTeacher(lambda messages, schema: reply)
    value, completion = asyncio.run(chat_json(teacher, [ChatMessage(role="user", content="q")],
                                              output))
    assert value.question == question
    assert json.loads(completion.text)["question"] == question  # the record's raw reply parses
    schema = output.model_json_schema()["properties"]["question"]
    assert schema["minLength"] == 48 and output.model_validate({"question": "What is apt?"})


def test_user_turn_numbers_documents_and_respond_adds_only_the_json_instruction():
    skill = load_skill("rag")
    docs = [chunk(1, "x.md"), chunk(2, "y.md")]
    turn = skill.render("user_turn.j2", documents=docs, question="Why is the sky blue?")
    assert "Document [1] (x.md):\ntext 1" in turn and "Document [2] (y.md):\ntext 2" in turn
    assert turn.endswith("Question: Why is the sky blue?")
    for sub in skill.spec.taxonomy:
        respond = skill.render("respond.j2", user_turn=turn, subcategory=sub)
        assert respond.startswith(turn) and '"citations"' in respond
        assert ('"answerable": true' in respond) == sub.answerable


def test_answer_schema_constrains_citations_to_the_documents_given():
    from agents.rag.skill import answer_schema

    schema = answer_schema(3, answerable=True).model_json_schema()
    cites = schema["properties"]["citations"]
    assert cites["minItems"] == 1 and cites["maxItems"] == 3
    assert cites["items"]["minimum"] == 1 and cites["items"]["maximum"] == 3
    assert schema["properties"]["answer"]["maxLength"] == 600
    refusal = answer_schema(3, answerable=False)
    assert refusal.model_json_schema()["properties"]["citations"]["maxItems"] == 0
    assert refusal.model_validate({"answerable": False, "answer": "The documents do not say.",
                                   "citations": []})


@pytest.mark.parametrize("type_, of_type, off_type", [
    ("yes_no", "Is Mount Etna one of the most active volcanoes?",
     "What makes Mount Etna one of the most active volcanoes?"),
    ("numeric", "How many workers live in a honey bee colony?",
     "Why do worker bees perform a waggle dance?"),
    ("numeric", "In what year did the Stockton and Darlington Railway open?",
     "Who built the engine of the Stockton and Darlington Railway?"),
    ("list", "List the kinds of bees in a honey bee colony.",
     "What is the purpose of a directory in Linux and UNIX systems?"),
    # "list" and "name" count as verbs only (a summary item's question was once kept as a list)
    ("list", "Name the railways George Stephenson built engines for.",
     "What is the name of the engine George Stephenson built?"),
    ("list", "Can you list the kinds of bees in a honey bee colony?",
     "What is the entry in the entry list of the entry_list?"),
    ("comparison", "How do shield volcanoes differ from stratovolcanoes?",
     "What is the purpose of the process of creating an ISO image?"),
    ("explanation", "Why do worker bees perform a waggle dance?",
     "How many workers live in a honey bee colony?"),
    ("summary", "Summarize what the handbook says about preseeding.",
     "What is the purpose of this command?"),
])
def test_a_question_must_be_of_its_type(type_, of_type, off_type):
    """skill.toml's `asks` per type: the off-type questions were accepted from the 135M teacher
    as list, comparison and summary items before this check."""
    sub = load_skill("rag").spec.subcategory(type_)
    assert sub.off_type(of_type) is None
    assert sub.off_type(off_type) == f"question is not a {type_.replace('_', ' ')} question"


def test_a_type_pattern_that_is_not_a_regular_expression_is_refused():
    with pytest.raises(ValueError, match="asks is not a regular expression"):
        Subcategory(name="list", description="several items", asks="(unclosed")


def bees_chunk(index) -> Chunk:
    return next(c for c in index.chunks if c.doc_path.endswith("bees.txt"))


def run_on_bees(index, teacher, subcategory: str, refine_rounds: int) -> Candidate:
    """One item of `subcategory` written from the bees passage as it is, run to its record."""
    ctx = FlowContext(teacher=teacher, index=index,
                      settings=FlowSettings(refine_rounds=refine_rounds))
    item = WorkItem(id=subcategory, skill="rag", subcategory=subcategory,
                    transformation="identity", seed_chunk_id=bees_chunk(index).id, seed=3)
    return asyncio.run(load_skill("rag").run(ctx, item))


@pytest.mark.parametrize("run_sets", [None, 0.3])
def test_answers_are_asked_at_the_skill_s_temperature_unless_the_run_sets_one(topic_index,
                                                                              run_sets):
    """A skill.toml may set its own answer temperature; a run's setting wins over it."""
    rag = load_skill("rag")
    assert rag.spec.answer_temperature == load_skill("mcq").spec.answer_temperature == 0.2
    rag.spec = rag.spec.model_copy(update={"answer_temperature": 0.9})  # as a skill.toml would
    teacher = ScriptedTeacher(answers_yes(rag_replies(
        lambda prompt: "Does a honey bee colony have a single queen?")))
    ctx = FlowContext(teacher=teacher, index=topic_index,
                      settings=FlowSettings(refine_rounds=0, answer_temperature=run_sets))
    item = WorkItem(id="t", skill="rag", subcategory="yes_no", transformation="identity",
                    seed_chunk_id=bees_chunk(topic_index).id, seed=3)
    asyncio.run(rag.run(ctx, item))
    answered = [t for t, m in zip(teacher.temperatures, teacher.prompts)
                if "Document [1] (" in m[-1].content]
    # the first attempt's (a rejected answer is asked again at the writing temperature)
    assert answered and answered[0] == (0.9 if run_sets is None else run_sets)


def test_an_off_type_question_is_asked_again_and_an_off_type_edit_dropped(topic_index):
    """The instruct call's first yes/no question is not one: it is asked again; the editor then
    turns the kept question into a what-question, which the round drops."""
    asked = []

    def question_for(prompt):
        asked.append(prompt)
        return ("What does a honey bee colony have?" if len(asked) == 1
                else "Does a honey bee colony have a single queen?")

    base = answers_yes(rag_replies(question_for))

    def reply(messages, schema):
        if "\nRewrite the question" in messages[-1].content:
            return json.dumps({"question": "What does a honey bee colony have as its queen?"})
        return base(messages, schema)

    candidate = run_on_bees(topic_index, ScriptedTeacher(reply), "yes_no", refine_rounds=1)
    assert candidate.instruction == "Does a honey bee colony have a single queen?"
    assert candidate.usage.retried == {"instruct: question is not a yes no question": 1}
    refine = candidate.metadata["refinement"][0]
    assert refine["kept"] is False
    assert refine["dropped_because"] == "question is not a yes no question"


def test_a_question_that_misses_its_type_every_time_is_kept_as_the_type_it_is(topic_index):
    """Planned as a summary, the teacher writes a yes/no question three times: the item is not
    lost, its record is a yes/no one, answered and checked as such, and says what was planned."""
    teacher = ScriptedTeacher(answers_yes(rag_replies(
        lambda prompt: "Does a honey bee colony have a single queen?")))
    candidate = run_on_bees(topic_index, teacher, "summary", refine_rounds=0)
    assert candidate.subcategory == "yes_no" == candidate.metadata["instruction_type"]
    assert candidate.metadata["planned_type"] == "summary"
    assert candidate.instruction == "Does a honey bee colony have a single queen?"
    # the planned type was asked for all three times first
    assert candidate.usage.retried == {"instruct: question is not a summary question": 2}
    assert candidate.messages[-1].content.startswith("Yes, ")


def test_a_question_of_no_other_type_still_ends_the_item(topic_index):
    """A what-question is no list question and has no other type's marker: the item ends as
    before (retyping needs positive evidence of the other type)."""
    teacher = ScriptedTeacher(rag_replies(lambda prompt: "What does a honey bee colony have?"))
    with pytest.raises(Rejected, match="question is not a list question"):
        run_on_bees(topic_index, teacher, "list", refine_rounds=0)


def test_retyping_keeps_the_items_passages_and_answerability():
    skill = load_skill("rag")
    spec = skill.spec
    # of two types (comparison and explanation): it is neither for sure
    assert skill.retyped("How does a worker bee differ from a queen bee?",
                         spec.subcategory("summary")) is None
    assert skill.retyped("Why do worker bees perform a waggle dance?",
                         spec.subcategory("summary")).name == "explanation"
    # a comparison needs two passages: a one-passage summary item cannot become one
    assert skill.retyped("Compare the worker bee with the queen bee.",
                         spec.subcategory("summary")) is None
    assert skill.retyped("Is the queen the only bee that lays eggs?",
                         spec.subcategory("summary")).name == "yes_no"
    assert skill.retyped("Is the queen the only bee that lays eggs?",
                         spec.subcategory("yes_no")) is None
    unanswerable = spec.subcategory("unanswerable")
    assert skill.retyped("Is the queen the only bee that lays eggs?", unanswerable) is None


def test_plan_is_deterministic_unique_and_spread_over_the_taxonomy():
    skill = load_skill("rag")
    chunks = [chunk(i) for i in range(30)]
    take = lambda seed: [x for _, x in zip(range(180), skill.plan(chunks, seed, per_chunk=2))]
    first, again, other = take(1), take(1), take(2)
    assert first == again
    assert [x.id for x in first] != [x.id for x in other]
    assert len({x.id for x in first}) == len(first)
    counts = Counter(x.subcategory for x in first)
    fair = len(first) / len(skill.spec.taxonomy)
    assert set(counts) == {s.name for s in skill.spec.taxonomy}
    assert max(counts.values()) <= 1.5 * fair
    # per_chunk consecutive items share their seed chunk and its transformation (one
    # transformation call and the prompt cache serve both)
    assert all(first[i].seed_chunk_id == first[i + 1].seed_chunk_id
               and first[i].transformation == first[i + 1].transformation
               for i in range(0, len(first), 2))
    assert len({x.transformation for x in first}) == len(skill.spec.transformations)


@pytest.mark.parametrize("question, problem", [
    ("What year did the Stockton and Darlington Railway open?", None),
    ("Why?", "question too short"),
    ("Why is that?", "question has no content words"),
    ("What is nftables?", None),
    ("Which topic is this?", "question has no content words"),
    ("What is this and that?", "question has no content words"),
    ("What is the answer to this question?", "question has no content words"),
    ("How to create a custom debconf template", None),
    ("According to the passage, when did the railway open?", "refers to 'the passage'"),
    ("The Stockton and Darlington Railway", "not a question or request"),
    ("Summarize what the documents say about honey bee colonies.", None),
    ("How many bees live in the colony of the colony of the colony of the colony of the colony "
     "of the colony of the colony?", "degenerate repetition"),
])
def test_check_question(question, problem):
    result = v.check_question(question)
    assert (result is None) if problem is None else (problem in result)


ANSWERABLE = Subcategory(name="single_fact", description="one fact from the passage")
UNANSWERABLE = Subcategory(name="unanswerable", description="answer not in passage",
                           answerable=False)


@pytest.mark.parametrize("citations, n, answerable, sub, problem", [
    ([1], 3, True, ANSWERABLE, None),
    ([], 3, True, ANSWERABLE, "cites no document"),
    ([4], 3, True, ANSWERABLE, "not among the 3 given"),
    ([0, 2], 3, True, ANSWERABLE, "[0]"),
    ([1], 3, False, ANSWERABLE, "declared unanswerable"),
    ([], 3, False, UNANSWERABLE, None),
    ([2], 3, False, UNANSWERABLE, "must not cite"),
    ([], 3, True, UNANSWERABLE, "answered as if answerable"),
])
def test_check_citations(citations, n, answerable, sub, problem):
    result = v.check_citations(citations, n, answerable, sub)
    assert (result is None) if problem is None else (problem in result)


@pytest.mark.parametrize("answer, expects, ok", [
    ("Yes, it opened in 1825.", "yes_no", True),
    ("It opened in 1825.", "yes_no", False),
    ("About 1,435 millimetres.", "number", True),
    ("A few millimetres.", "number", False),
    ("Arabica and Robusta.", "list", True),
    ("Arabica.", "list", False),
    ("Anything goes.", "any", True),
])
def test_check_form(answer, expects, ok):
    assert (v.check_form(answer, expects) is None) == ok


def test_lexical_support_and_grounding():
    passage = "The Stockton and Darlington Railway opened in 1825 with steam locomotives."
    grounded = "The Stockton and Darlington Railway opened in 1825."
    invented = "Penguins migrate across Antarctica every winter season."
    assert v.lexical_support(grounded, [passage]) == 1.0
    assert v.lexical_support(invented, [passage]) == 0.0
    assert v.lexical_support("", [passage]) == 0.0
    assert v.check_grounding(1.0, 0.1) is None
    assert v.check_grounding(0.1, 0.9) is None
    assert "not supported" in v.check_grounding(0.1, 0.2)


def test_check_repetition():
    loop = "The answer is that the answer is that " * 6
    assert v.check_repetition(loop) == "degenerate repetition"
    assert v.check_repetition("Honey bees live in colonies of 20,000 to 80,000 workers with a "
                              "single queen that can live for three to five years.") is None


@pytest.mark.parametrize("answer, expects, problem", [
    ("14.2.4. installnopacket-filter-nfbt.dyn.dyn", "prose", "not a few sentences of prose"),
    ("The nftables file", "sentence", "not a sentence"),
    ("Stephenson built it, and the line opened in 1830.", "sentence", None),
    ("[1.0]", "prose", "not a few sentences of prose"),
    ("Debconf asks the questions a package needs while it is installed, and stores the answers "
     "so that later upgrades can reuse them.", "prose", None),
    ("The documents do not contain this information: say so in one sentence.", "any",
     "copies the prompt's instructions ('say so in one sentence')"),
    ("The documents do not contain this information.", "any", None),
    ("Document [1] (debian-handbook/sect.acknowledgments.html): We would like to thank everyone "
     "who helped us.", "any", "copies a document's header"),
])
def test_thin_answers_and_echoed_instructions_are_caught(answer, expects, problem):
    """Both were accepted in a measured run before these checks."""
    found = v.check_echo(answer) or v.check_form(answer, expects)
    assert (found is None) if problem is None else (problem in found)


def test_a_section_heading_is_not_an_answer():
    assert v.check_not_heading("6.7.2. Handling Problems After an Upgrade") \
        == "answer is a section heading"
    assert v.check_not_heading("12.3.2.3. Preparing a Bootable USB Key") is not None
    assert v.check_not_heading("1.5 million packages were built in 2023.") is None


def test_a_title_line_of_its_document_is_not_an_answer():
    """Seen kept from the README's own command: "What was the last book printed with movable
    type?" → the page's title."""
    from retrieval.html_text import html_to_text

    page = html_to_text((Path(__file__).parents[1] / "examples" / "docs" /
                         "printing-press.html").read_text())
    assert v.check_not_heading("The Printing Press | History Notes.", [page]) \
        == "answer is a heading of its document"
    assert v.check_not_heading("The Printing Press | History Notes", []) is None
    # a sentence of the document, a short cell, and a heading's words inside a sentence pass
    sentence = next(line for line in page.splitlines() if line.endswith("."))
    assert v.check_not_heading(sentence, [page]) is None
    assert v.check_not_heading("Gutenberg's invention", ["Gutenberg's invention\n"]) is None
    assert v.check_not_heading("The Printing Press | History Notes describes Gutenberg.",
                               [page]) is None


def test_an_answer_that_says_a_phrase_three_times_is_a_loop():
    # kept by a real run: each turn reworded, so neither the trigram nor the sentence check fires
    padded = ("The package is a collection of packages that are installed in a single step, and "
              "is a meta-package that is installed by dpkg and apt. It is a collection of "
              "packages that is installed by the package-building system, and is a meta-package. "
              "It is a meta-package that is built by the package-building system. It is a "
              "meta-package that contains a collection of packages.")
    assert v.check_repetition(padded) is None
    assert v.check_repeated_sentence(padded) is None
    assert v.check_looping(padded) == "answer repeats a phrase"
    # twice is not a loop: an answer may name its subject's phrase again
    twice = ("The preseed file answers the installer's questions. Put the preseed file on the "
             "boot media, or give its URL as a boot parameter.")
    assert v.check_looping(twice) is None
    # a word said many times inside different phrases is not a loop either
    assert v.check_looping("Debian stable gets updates, Debian testing gets newer packages, and "
                           "Debian unstable gets the newest ones.") is None
    assert v.check_looping("lightweight, lightweight, lightweight, lightweight, lightweight, "
                           "lightweight") == "answer repeats a phrase"


def test_an_answer_that_repeats_a_sentence_or_is_cut_off_is_caught():
    twice = ("The firewall script filters traffic by default. It is a command-line tool that "
             "controls network devices. It is a command-line tool that controls network devices.")
    assert v.check_repetition(twice) is None  # too short a loop for the trigram check
    assert v.check_repeated_sentence(twice) == "answer repeats a sentence"
    assert v.check_repeated_sentence("Yes. Yes. It opened in 1825 as the first public line.") \
        is None  # short sentences may repeat
    assert v.check_repeated_sentence("The answer to your question is: The answer to your "
                                     "question is: a list of files.") \
        == "answer repeats a sentence"  # seen accepted
    # reworded or negated, seen accepted: the same sentence said twice all the same
    assert v.check_repeated_sentence("The document is not available to edit. The document is "
                                     "not available for edit.") == "answer repeats a sentence"
    assert v.check_repeated_sentence("The document does not contain multiple options. The "
                                     "document contains multiple options.") is not None
    # two sentences about one subject are not a repeat
    assert v.check_repeated_sentence("Debian stable receives security updates for about three "
                                     "years. Debian testing receives no security updates from "
                                     "the security team.") is None
    assert v.check_repeated_sentence("IPv4 addresses are 32 bits long. IPv6 addresses are 128 "
                                     "bits long.") is None
    cut = "word " * 119 + "and then"
    assert v.check_complete(cut, 600) == "answer cut off at its length limit"
    assert v.check_complete(("word " * 119).strip() + ".", 600) is None
    assert v.check_complete("Arabica and Robusta", 600) is None  # short, no full stop: fine
    # seen accepted: the answer announces the command and ends there
    assert v.check_complete("The code that sets the default time zone is:", 600) \
        == "answer stops before what it announces"


@pytest.mark.parametrize("answer, ok", [
    ("The documents do not say when it closed.", True),
    ("This information is not provided.", True),
    ("There is no mention of a closing date in the sources.", True),
    ("It closed in 1901.", False),
    ("This is an answer to the question, but it is not a detailed answer. The answer is not an "
     "answer to the question.", False),
    ("It is not mentioned anywhere.", True),
    # kept from real runs: a negation and a "contains"/"information" in different places
    ("The list contains only pending tasks that have not been cancelled.", False),
    ("This is not a default answer to this question.  If you need more information, please "
     "provide a request to a user that can provide more details.", False),
    ("The answer is not possible to be provided. Please provide a response in JSON format.", False),
])
def test_check_refusal(answer, ok):
    assert (v.check_refusal(answer) is None) == ok


USGS = ("The United States Geological Survey (USGS) estimates that Earth holds about 1.386 "
        "billion cubic kilometres of water.")


@pytest.mark.parametrize("question, answer, cosine, problem", [
    # kept from a real run: on the documents' topic, not on the question's; "States" is only
    # part of a name there, so it shares no word with the question's "states"
    ("How many states have a coastline?", USGS, 0.246, True),
    ("What is Douglas Adams' favorite hobby?", "The book helped people to get started with "
     "Debian.", 0.181, True),
    # a question that names the name does share it
    ("How much water does the United States Geological Survey count?", USGS, 0.2, False),
    # short answers are far from their question in embedding space and still right
    ("Who wrote the Debian Administrator's Handbook?", "Raphaël Hertzog and Roland Mas.", 0.068,
     False),
    # right, concise, no word shared: their cosines (0.293, 0.307) are why the bound is low
    ("When was Debian founded?", "Ian Murdock announced the project on 16 August 1993 while a "
     "student at Purdue University.", 0.293, False),
    ("How long does a queen bee live?", "Three to five years, while workers last about six "
     "weeks in summer.", 0.307, False),
    # a shared word stem ("translated" / "translation") spares it
    ("How many languages was the book translated into?", "Its translation covers 24 languages "
     "from Arabic to Swedish, done by volunteers.", 0.2, False),
])
def test_check_relevance(question, answer, cosine, problem):
    assert (v.check_relevance(question, answer, cosine) == "answer is not about its question") \
        == problem


def test_specifics_are_the_names_and_numbers_a_text_states():
    text = ("The documents do not say. It occurred on October 25, 2014, in Dubai [1]. I'm sure "
            "IPv4's scheme is Windows-based, with 1,000 users of v1.1.0.\n1. Install Foo\n- Bar")
    assert v.specifics(text) == ["October", "25", "2014", "Dubai", "IPv4", "Windows", "1000",
                                 "v1.1.0", "Foo"]


@pytest.mark.parametrize("answer, ok", [
    # each seen accepted (cosine or lexical support enough) before this check
    ("The documents do not provide information about the docker 5.0 explosion, which occurred "
     "on October 25, 2014, in the city of Dubai.", False),
    ("The IPv6 protocol, introduced in 2014, routes packets.", False),
    ("Knoppix is a Linux distribution with a Windows-based desktop.", False),
    ("This answer is not available in JSON format.", False),
    # what the documents or the question name, however written
    ("Knoppix runs from a CD-ROM on Linux, written by Klaus Knopper.", True),
    ("About 1,000 packages, since Debian 10.", True),
    ("The docker 5.0 explosion is not in the documents.", True),
    # a number computed from two the record shows, to the precision it is written with
    ("It opened in 1990 and closed in 2002, 12 years later.", True),
    ("It opened in 1990 and closed in 2002, 13 years later.", False),
    ("Debian 10 ships 1,000 packages, 1,010 with ten more.", True),  # 1000 + 10
    ("Debian 10 ships 1,000 packages, 1,013 with ten more.", False),  # within 1%, not computed
    # not from numbers only the documents state: among a document's numbers some pair sums to
    # almost any small count ("The firewall limits 12 ports", kept by a real run, invented)
    ("It ran for 12 years.", False),
    ("At least 11 died.", True),  # the question's "eleven"
    ("At least 14 died.", False),
])
def test_an_answer_states_only_names_and_numbers_of_its_documents(answer, ok):
    documents = ["Knoppix, by Klaus Knopper, boots Linux from a CD-ROM. Debian 10 ships 1000 "
                 "packages. The line opened in 1990 and closed in 2002."]
    question = "How many people died in the docker 5.0 explosion, eleven or more?"
    found = v.check_specifics(answer, [question, *documents], question)
    assert (found is None) == ok, found


@pytest.mark.parametrize("answer, ok", [("12 years.", True), ("It ran for 13 years.", False)])
def test_a_number_may_be_computed_from_the_question_s_numbers(answer, ok):
    documents = ["The line opened in 1990 and closed in 2002."]
    question = "How many years did the line run, from 1990 to 2002?"
    assert (v.check_specifics(answer, [question, *documents], question) is None) == ok
    # the same answer to a question that shows no numbers computes from nothing it shows
    plain = "How many years did the line run?"
    assert v.check_specifics("12 years.", [plain, *documents], plain) is not None


@pytest.mark.parametrize("question, ok", [
    ("What steps in printing were made by a Chinese artisan in 1512?", False),  # 1040
    ("Who was Benoît Guillillon?", False),
    ("How can I configure Bi Sheng's type on a Windows system?", False),
    ("What did Bi Sheng make around 1040?", True),
    ("What did bi sheng make around ten-forty?", True),  # no names: nothing to check
    ("Name 3 materials of movable type.", True),  # a count asked for
    ("How many copies of the 42-line Bible were printed?", True),
    ("When did Gutenberg print the 43-line Bible?", False),
])
def test_a_question_names_only_what_its_passages_state(question, ok):
    passages = ["Around 1040 the Chinese artisan Bi Sheng made movable type from clay.",
                "Gutenberg's 42-line Bible was printed around 1455."]
    found = v.check_question_specifics(question, passages)
    assert (found is None) == ok, found


def test_only_an_answerable_question_must_name_what_its_passages_state():
    skill = load_skill("rag")
    passages = ["Around 1040 the Chinese artisan Bi Sheng made movable type from clay."]
    question = "What did Bi Sheng make in Mainz in 1450?"
    assert skill.check_instruction(question, passages, skill.spec.subcategory("single_fact")) \
        == "question names or numbers what its passages do not"
    assert skill.check_instruction(question, passages,
                                   skill.spec.subcategory("unanswerable")) is None


@pytest.mark.parametrize("raw, kept", [
    ("How long does a worker bee live? (A) 6 weeks (B) 1 year", "How long does a worker bee live?"),
    ("  Summarize   the bee\ntext.  ", "Summarize the bee text."),
    ("What? Why?", "What?"),
])
def test_first_question_cuts_what_follows_the_question(raw, kept):
    from agents.flow import first_question

    assert first_question(raw) == kept


@pytest.mark.parametrize("question, ok", [
    ("How many workers live in a honey bee colony?", True),
    ("What is the answer to this question?", False),
    ("Which statement about the source is given?", False),
    ("What is the queen's role?", True),  # a possessive names its word (was "queen's")
    ("What's a colony?", True),  # "colonies", singular
    ("Which colony has workers?", True),
    ("What is a colon?", False),  # no prefix matching
    ("What do drones eat?", False),
])
def test_check_on_topic(question, ok):
    passage = "Honey bees live in colonies of 20,000 to 80,000 workers with a single queen."
    assert (v.check_on_topic(question, [passage]) is None) == ok


@pytest.mark.parametrize("answer, ok", [
    ("Titan is the largest moon in the Solar System, bigger than Mercury.", False),
    ("The largest moon, Titan.", False),
    ("Ganymede, which orbits Jupiter, is the largest moon.", True),
    ("Yes, since 1825.", True),
])
def test_check_adds_information(answer, ok):
    question = "Is Titan the largest moon in the Solar System, bigger than Mercury?"
    assert (v.check_adds_information(question, answer) is None) == ok


# -- a shared transformation's tokens are charged by outcome ----------------------------------

def bee_teacher():
    """key_facts passes the passage on; yes/no questions always refer to 'the passage' (their
    item ends at instruct), single-fact ones are good and answered from document [1]."""
    base = rag_replies(lambda prompt: "How many workers live in a honey bee colony?")

    def reply(messages, schema):
        prompt = messages[-1].content
        if "Passage:\n" in prompt:
            return json.dumps({"text": prompt.split("Passage:\n", 1)[1].split("\n\nReply")[0]})
        if "\nWrite ONE yes no question" in prompt:
            return json.dumps({"question": "Does the passage say that?"})
        return base(messages, schema)
    return ScriptedTeacher(reply)


def shared_items(index):
    chunk = bees_chunk(index)
    return [WorkItem(id=sub, skill="rag", subcategory=sub, transformation="key_facts",
                     seed_chunk_id=chunk.id, seed=5) for sub in ("yes_no", "single_fact")]


async def outcome(skill, ctx, item):
    try:
        return await skill.run(ctx, item)
    except Rejected as exc:
        return exc


@pytest.mark.parametrize("together", [True, False])
def test_a_shared_transformation_is_charged_to_the_item_that_is_kept(topic_index, together):
    """Two items share one transformation call. Run together, the rejected one ends first while
    the other still waits: the call is charged to the kept one, and is not waste. Run one after
    the other, the rejected one is its only user when it ends: it is charged the call."""
    skill = load_skill("rag")
    ctx = FlowContext(teacher=bee_teacher(), index=topic_index,
                      settings=FlowSettings(refine_rounds=0))
    items = shared_items(topic_index)

    async def main():
        if together:
            return await asyncio.gather(*(outcome(skill, ctx, item) for item in items))
        return [await outcome(skill, ctx, item) for item in items]

    rejected, kept = asyncio.run(main())
    assert isinstance(rejected, Rejected) and rejected.stage == "instruct"
    assert isinstance(kept, Candidate)
    transform_calls = [p for p in ctx.teacher.prompts if "Passage:\n" in p[-1].content]
    assert len(transform_calls) == 1  # one call, whatever the order
    payer, free = (kept, rejected) if together else (rejected, kept)
    assert payer.usage.by_stage["transform"] > 0 and "transform" not in free.usage.by_stage


def test_a_failed_transformation_is_asked_once_and_the_passage_goes_on(topic_index):
    """RAG's skill.toml sets transform_fallback: a transformation the teacher fails (here: JSON
    cut off) is not asked again, and the item goes on from the passage as it is."""
    base = bee_teacher().reply

    def reply(messages, schema):
        if "Passage:\n" in messages[-1].content:
            return '{"text": "- fact one\\n- fact one\\n- fact one'  # cut off, nothing to salvage
        return base(messages, schema)

    skill = load_skill("rag")
    assert skill.spec.transform_fallback
    ctx = FlowContext(teacher=ScriptedTeacher(reply), index=topic_index,
                      settings=FlowSettings(refine_rounds=0))
    item = shared_items(topic_index)[1]  # single_fact, key_facts
    candidate = asyncio.run(skill.run(ctx, item))
    prompts = [p[-1].content for p in ctx.teacher.prompts]
    assert sum("Passage:\n" in p for p in prompts) == 1
    assert candidate.metadata["transformation"] == "key_facts"
    assert candidate.metadata["transformation_fell_back"] is True
    assert candidate.metadata["planned_type"] == candidate.metadata["instruction_type"] \
        == item.subcategory  # not retyped: the same, and present all the same
    chunk = topic_index.get(item.seed_chunk_id)
    instruct = next(p for p in prompts if "\nWrite ONE" in p)
    assert chunk.text in instruct  # the passage itself, not a transformation of it
    assert candidate.usage.by_stage["transform"] > 0  # the failed call is still paid for


# -- demonstrations: one good reply per type, shown as an earlier turn ------------------------

def test_every_type_has_a_demonstration_that_passes_its_own_checks():
    skill = load_skill("rag")
    demo = skill.spec.demonstrations
    assert set(demo.questions) == {s.name for s in skill.spec.taxonomy}
    for name, shown in demo.questions.items():
        sub = skill.spec.subcategory(name)
        passages = demo.passages[:sub.passages]
        assert shown.about.lower() in passages[0].lower()  # an anchor is a term of the seed
        assert skill.check_instruction(shown.question, passages, sub) is None, name
        assert not demo.copied(shown.question, passages)  # its own source has the telltales


def test_the_teacher_sees_a_demonstration_of_the_type_before_the_item(topic_index):
    teacher = ScriptedTeacher(rag_replies(lambda p: "How many workers live in a honey bee colony?"))
    run_on_bees(topic_index, teacher, "single_fact", refine_rounds=1)
    skill, chunk = load_skill("rag"), bees_chunk(topic_index)
    shown, reply, asked = teacher.prompts[0]  # the instruct call: demonstration, then the item
    assert (shown.role, reply.role, asked.role) == ("user", "assistant", "user")
    assert "Thames Barrier" in shown.content and "Write ONE single fact question" in shown.content
    assert json.loads(reply.content)["question"] == \
        skill.spec.demonstrations.questions["single_fact"].question
    assert chunk.text in asked.content and "Thames" not in asked.content
    # the demonstrated reply has the shape this item's reply is asked for (with or without the
    # anchor's "about"), and the item's prompt is the one it would be without a demonstration
    assert ("about" in json.loads(reply.content)) == ('{"about": ' in asked.content)
    anchor = json.loads(reply.content).get("about")
    assert anchor is None or f'about "{anchor}" that' in shown.content
    # the refinement's calls open with the same turns (one cached prefix for the chain)
    suggest, edit, respond = teacher.prompts[1:]
    assert "Suggest one to three" in suggest[-1].content and "Rewrite" in edit[-1].content
    assert suggest[:2] == edit[:2] == [shown, reply]


def test_the_teacher_sees_an_answer_of_the_type_before_it_answers(topic_index):
    """The answer call: the system prompt, the demonstration's question asked with its passages
    as the documents and its answer, then the item's own user turn; the record keeps only the
    item's turns."""
    teacher = ScriptedTeacher(rag_replies(lambda p: "How many workers live in a honey bee colony?"))
    candidate = run_on_bees(topic_index, teacher, "single_fact", refine_rounds=0)
    demo = load_skill("rag").spec.demonstrations
    system, shown, reply, asked = teacher.prompts[-1]
    assert [m.role for m in (system, shown, reply, asked)] == ["system", "user", "assistant", "user"]
    assert demo.questions["single_fact"].question in shown.content
    assert all(p in shown.content for p in demo.passages)
    assert "Document [2] (examples/passage-2.html):" in shown.content
    assert json.loads(reply.content) == demo.questions["single_fact"].answer
    assert list(json.loads(reply.content)) == ["answerable", "answer", "citations"]  # schema order
    assert [m.role for m in candidate.messages] == ["system", "user", "assistant"]
    assert candidate.messages[1].content == asked.content.split("\n\nAnswer briefly")[0]
    assert "Thames" not in asked.content and "Thames" not in candidate.messages[2].content


def test_every_demonstrated_answer_passes_the_validators_of_its_type(topic_index):
    """Each answer shown is one the skill would accept: its form, grounded in the document it
    cites (words and embedding), answerable or refused as its type is."""
    skill = load_skill("rag")
    demo = skill.spec.demonstrations
    ctx = FlowContext(teacher=None, index=topic_index, settings=FlowSettings())
    documents = [Chunk(id=f"d{n}", doc_path=f"d{n}.html", kind="prose", start=0, end=len(text),
                       text=text) for n, text in enumerate(demo.passages)]
    for name, shown in demo.questions.items():
        sub = skill.spec.subcategory(name)
        reply = rag.answer_schema(len(documents), sub.answerable).model_validate(shown.answer)
        verdict = asyncio.run(skill.judge(ctx, sub, shown.question, reply, documents))
        assert verdict.problem is None, (name, verdict.problem)


def test_a_refusal_cut_off_at_its_own_length_limit_is_not_kept(topic_index):
    """README command 1 kept this "refusal" (300 characters, the refusal schema's limit, cut
    mid-sentence; "data ... not" passed the refusal wording): the cut-off check measured it
    against the 600 characters of an answer."""
    skill = load_skill("rag")
    ctx = FlowContext(teacher=None, index=topic_index, settings=FlowSettings())
    documents = [bees_chunk(topic_index)]
    cut = ("The heap is a data structure used to manage large collections of values, but it is "
           "not a collection of tasks that can be executed directly. It is a data structure used "
           "to store data in a way that allows tasks to be executed in a single pass. It is a "
           "collection of tasks that are ordered in a way that")
    assert len(cut) == rag.REFUSAL_CHARS
    sub = skill.spec.subcategory("unanswerable")
    judge = lambda answer: asyncio.run(skill.judge(ctx, sub, "What is a heap?", rag.answer_schema(
        1, answerable=False).model_validate({"answerable": False, "answer": answer,
                                             "citations": []}), documents)).problem
    assert judge(cut) == "answer cut off at its length limit"
    assert judge("The documents do not say what a heap is.") is None


def test_an_answer_that_copies_the_demonstration_is_asked_again(topic_index):
    copied = load_skill("rag").spec.demonstrations.questions["single_fact"].answer
    base = rag_replies(lambda p: "How many workers live in a honey bee colony?")
    answers = []

    def reply(messages, schema):
        if "answerable" in (schema or {}).get("properties", {}):
            answers.append(messages)
            if len(answers) == 1:
                return json.dumps(copied)
        return base(messages, schema)

    candidate = run_on_bees(topic_index, ScriptedTeacher(reply), "single_fact", refine_rounds=0)
    assert "Thames" not in candidate.messages[2].content
    assert candidate.usage.retried == {"validate: answer copies the demonstration": 1}
    # asked again without the demonstration it copied
    assert [m.role for m in answers[0]] == ["system", "user", "assistant", "user"]
    assert answers[1] == [answers[0][0], answers[0][-1]]


def test_a_demonstrated_answer_must_have_the_reply_shape_of_its_type(tmp_path):
    import shutil

    folder = tmp_path / "rag"
    shutil.copytree(load_skill("rag").folder, folder)
    toml = folder / "skill.toml"
    text = toml.read_text()
    refusal = 'answer = { answerable = false, citations = [], answer = "The documents do not say'
    assert refusal in text
    toml.write_text(text.replace(refusal, refusal.replace("citations = []", "citations = [1]")))
    with pytest.raises(ValueError, match=r"skill.toml: the demonstration's answer for "
                                         r"unanswerable: .*citations"):
        rag.RagSkill(folder)


def test_a_question_that_copies_the_demonstration_is_asked_again(topic_index):
    copied = load_skill("rag").spec.demonstrations.questions["single_fact"].question
    asked = []

    def question_for(prompt):
        asked.append(prompt)
        return copied if len(asked) == 1 else "How many workers live in a honey bee colony?"

    teacher = ScriptedTeacher(rag_replies(question_for))
    candidate = run_on_bees(topic_index, teacher, "single_fact", refine_rounds=0)
    assert candidate.instruction == "How many workers live in a honey bee colony?"
    assert candidate.usage.retried == {"instruct: question copies the demonstration": 1}
    # asked again without the demonstration it copied, the item's own prompt unchanged
    first, again = teacher.prompts[0], teacher.prompts[1]
    assert [m.role for m in first] == ["user", "assistant", "user"]
    assert again == first[-1:]


def test_demonstrations_must_name_known_types_and_bring_their_passages(tmp_path):
    import tomllib

    from agents.spec import SkillSpec

    data = tomllib.loads((load_skill("rag").folder / "skill.toml").read_text())
    data["demonstrations"]["questions"]["nonsense"] = {"about": "x", "question": "What is x here?"}
    with pytest.raises(ValueError, match=r"demonstrations for unknown subcategories: \['nonsense'\]"):
        SkillSpec.model_validate(data)
    del data["demonstrations"]["questions"]["nonsense"]
    data["demonstrations"]["passages"] = data["demonstrations"]["passages"][:1]
    with pytest.raises(ValueError, match=r"demonstrations for \['comparison', 'multi_hop'\] need "
                                         r"more passages than the 1 given"):
        SkillSpec.model_validate(data)


def test_an_edit_that_copies_the_demonstration_is_dropped(topic_index):
    copied = load_skill("rag").spec.demonstrations.questions["single_fact"].question
    base = rag_replies(lambda p: "How many workers live in a honey bee colony?")

    def reply(messages, schema):
        if "\nRewrite the question" in messages[-1].content:
            return json.dumps({"question": copied})
        return base(messages, schema)

    candidate = run_on_bees(topic_index, ScriptedTeacher(reply), "single_fact", refine_rounds=1)
    assert candidate.instruction == "How many workers live in a honey bee colony?"
    refine = candidate.metadata["refinement"][0]
    assert (refine["kept"], refine["dropped_because"]) == (False, "question copies the demonstration")


def test_an_answer_about_something_else_than_its_question_is_rejected(topic_index):
    """The answer is grounded (every word and number from the bees document it cites) but does
    not answer the question, the case a real run kept; the answer to the question passes."""
    skill, sub = load_skill("rag"), load_skill("rag").spec.subcategory("single_fact")
    ctx = FlowContext(teacher=None, index=topic_index, settings=FlowSettings())
    documents = [bees_chunk(topic_index)]
    question = "How long does a queen live?"
    schema = rag.answer_schema(1, True)

    def judged(answer):
        reply = schema.model_validate({"answerable": True, "answer": answer, "citations": [1]})
        return asyncio.run(skill.judge(ctx, sub, question, reply, documents))

    off = judged("Bees make honey by evaporating nectar until its water content falls below "
                 "about 18 percent.")
    assert off.problem == "answer is not about its question"
    assert off.scores["relevance"] < 0.27
    on = judged("A queen can live three to five years, while a worker bee lives about six weeks "
                "in summer.")
    assert on.problem is None and on.scores["relevance"] >= 0.27
