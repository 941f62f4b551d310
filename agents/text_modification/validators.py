"""Text-modification validators: pure functions returning a rejection reason, or None when the
task (cheap checks, before the answer is paid for) or the modified text passes."""

from __future__ import annotations

import json
import re
from typing import Any

from agents.rag.validators import STOPWORDS, check_repetition, content_words, lexical_support
from agents.text_modification.measure import (
    BRACKET_NOTE, FUNCTION_WORDS, MARKUPS, NUMBER_WORDS, PLACEHOLDER, SENTENCE_END,
    content_recall, has_phrase, long_words, longest_shared_run, number_words, numbers, polarity,
    proper_nouns, similarity, squash, stopword_share, strip_markup, tokens, words)

LABELS = ("entailment", "contradiction", "neutral")
KNOB_CUES = {  # what the instruction must say for each knob value
    "upper": r"upper|all caps|all capital|block capital", "lower": r"lower",
    "title": r"title|first letter of (?:each|every)|each word|every word",
    "bullet_list": r"bullet", "numbered_list": r"number|enumerat", "json": r"json",
    "table": r"table",
    "positive": r"positiv|optimis|upbeat|enthusias|cheerful|favou?rabl|happ",
    "negative": r"negativ|pessimis|critical|gloomy|unfavou?rabl|complain|sad",
    "bold": r"bold|strong", "italic": r"italic|emphas",
    "numbers_as_digits": r"digit|numeral|figure", "numbers_as_words": r"word|spell|letter",
}


# -- cheap checks on the task -----------------------------------------------------------------


def check_instruction(instruction: str, text: str, cue: str, knob_value: str | None,
                      request: str, type_name: str) -> str | None:
    n = len(instruction.split())
    if n < 3:
        return "instruction too short"
    if n > 80:
        return f"instruction too long ({n} words > 80)"
    if (run := longest_shared_run(instruction, text)) >= 10:
        return f"instruction repeats the input text ({run} words)"
    if cue and not re.search(cue, instruction, re.IGNORECASE):
        return f"instruction does not ask for {type_name.replace('_', ' ')}"
    if knob_value and knob_value in KNOB_CUES \
            and not re.search(KNOB_CUES[knob_value], instruction, re.IGNORECASE):
        return f"instruction does not ask for {request}"
    if knob_value in FUNCTION_WORDS and knob_value.lower() not in instruction.lower():
        return f"instruction does not name the language {knob_value}"
    return check_repetition(instruction)


def check_keyword_task(text: str, instruction: str, keyword: str, replacement: str) -> str | None:
    if not has_phrase(text, keyword):
        return f"keyword '{keyword}' does not occur in the input text"
    if squash(keyword) == squash(replacement):
        return "replacement is the keyword itself"
    if has_phrase(replacement, keyword):
        return f"replacement '{replacement}' contains the keyword"
    if has_phrase(text, replacement):
        return f"replacement '{replacement}' already occurs in the input text"
    if not (has_phrase(instruction, keyword) and has_phrase(instruction, replacement)):
        return "instruction does not name both the keyword and its replacement"
    return None


def check_removal_task(text: str, instruction: str, remove: str) -> str | None:
    item = squash(remove).strip(" .\"'")
    if not item or item not in squash(text):
        return "item to remove does not occur in the input text"
    if len(item) > 0.6 * len(squash(text)):
        return "item to remove is most of the input text"
    head = " ".join(item.split()[:4])
    if head not in squash(instruction):
        return "instruction does not name the item to remove"
    return None


def check_hypothesis(text: str, hypothesis: str) -> str | None:
    if len(hypothesis.split()) < 4:
        return "hypothesis too short"
    if not content_words(hypothesis) & content_words(text):
        return "hypothesis is not about the input text"
    if squash(hypothesis).strip(" .") in squash(text):
        return "hypothesis copies the input text"
    return None


# -- validators on the modified text ----------------------------------------------------------


def check_not_copy(text: str, output: str) -> str | None:
    if squash(output) == squash(text):
        return "output is a copy of the input"
    return None


def check_paraphrase(text: str, output: str, max_similarity: float = 0.75,
                     min_recall: float = 0.3) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    if (sim := similarity(text, output)) >= max_similarity:
        return f"output keeps the input's wording (similarity {sim:.2f} >= {max_similarity})"
    if (rec := content_recall(text, output)) < min_recall:
        return f"output lost the input's content (keeps {rec:.2f} of its content words)"
    ratio = len(output) / len(text)
    if not 0.5 <= ratio <= 2.0:
        return f"paraphrase is {ratio:.1f}x the input's length"
    return None


def _mean_sentence_words(text: str) -> float:
    sentences = [s for s in SENTENCE_END.split(" ".join(text.split())) if s]
    return len(text.split()) / max(1, len(sentences))


def _mean_word_length(text: str) -> float:
    ws = [w for w in words(text) if w.isalpha()]
    return sum(map(len, ws)) / len(ws) if ws else 0.0


def check_simplified(text: str, output: str, min_recall: float = 0.25) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    if (rec := content_recall(text, output)) < min_recall:
        return f"output lost the input's content (keeps {rec:.2f} of its content words)"
    shorter = len(output) < 0.9 * len(text)
    plainer_words = _mean_word_length(output) < _mean_word_length(text) - 0.1
    shorter_sentences = _mean_sentence_words(output) < _mean_sentence_words(text) - 1
    if not (shorter or plainer_words or shorter_sentences):
        return "simplified text is neither shorter nor plainer than the input"
    if len(output) > 1.3 * len(text):
        return "simplified text is much longer than the input"
    return None


def check_expanded(text: str, output: str, min_ratio: float = 1.3,
                   min_recall: float = 0.5) -> str | None:
    ratio = len(output) / len(text)
    if ratio < min_ratio:
        return f"expanded text is only {ratio:.2f}x the input (< {min_ratio}x)"
    if (rec := content_recall(text, output)) < min_recall:
        return f"expansion dropped the input's content (keeps {rec:.2f} of its content words)"
    return None


def check_translation(text: str, output: str, language: str, max_english: float = 0.12,
                      min_target: float = 0.08) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    if (en := stopword_share(output, STOPWORDS)) > max_english:
        return f"output is still English (English function-word share {en:.2f})"
    if (share := stopword_share(output, FUNCTION_WORDS[language])) < min_target:
        return f"output is not {language} ({language} function-word share {share:.2f})"
    if missing := numbers(text) - numbers(output):
        return "translation dropped the number(s) " + ", ".join(sorted(missing))
    return None


def check_format(text: str, output: str, fmt: str, min_recall: float = 0.4) -> str | None:
    lines = [line for line in output.splitlines() if line.strip()]
    if fmt == "bullet_list":
        bullets = [line for line in lines if re.match(r"\s*[-*•]\s+\S", line)]
        if len(bullets) < 2:
            return f"output is not a bullet list ({len(bullets)} bullet lines)"
    elif fmt == "numbered_list":
        nums = [int(m.group(1)) for line in lines if (m := re.match(r"\s*(\d+)[.)]\s+\S", line))]
        if len(nums) < 2:
            return f"output is not a numbered list ({len(nums)} numbered lines)"
        if nums != list(range(1, len(nums) + 1)):
            return "numbered list does not count 1, 2, 3, ..."
    elif fmt == "json":
        body = re.sub(r"^```(?:json)?\s*|\s*```$", "", output.strip())
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            return f"output is not valid JSON ({exc.msg} at line {exc.lineno})"
        if not isinstance(value, (dict, list)) or not value:
            return "JSON output is not a non-empty object or array"
    elif fmt == "table":
        rows = [line for line in lines if line.count("|") >= 2]
        if not any(re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*", r)
                   for r in rows):
            return "output is not a Markdown table (no |---| separator row)"
        cells = {len(r.strip().strip("|").split("|")) for r in rows}
        if len(rows) < 3 or len(cells) != 1 or cells.pop() < 2:
            return ("Markdown table needs a header, a separator and rows of two or more "
                    "equal columns")
    else:
        return f"unknown format {fmt!r}"
    if (rec := content_recall(text, output)) < min_recall:
        return f"formatted output dropped the input's content (keeps {rec:.2f})"
    return None


def check_sentiment(text: str, output: str, sentiment: str, min_recall: float = 0.2) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    before, after = polarity(text, sentiment), polarity(output, sentiment)
    if after <= before or after < 1:
        return f"output is not more {sentiment} than the input (tone score {before} -> {after})"
    if (rec := content_recall(text, output)) < min_recall:
        return f"output left the input's subject (keeps {rec:.2f} of its content words)"
    return None


def check_annotated(text: str, output: str, min_similarity: float = 0.8) -> str | None:
    added = len(BRACKET_NOTE.findall(output)) - len(BRACKET_NOTE.findall(text))
    if added < 1:
        return "no notes in square brackets were added"
    kept = similarity(text, BRACKET_NOTE.sub(" ", output))
    if kept < min_similarity:
        return f"annotated output does not keep the original text (similarity {kept:.2f})"
    return None


def check_keyword_replaced(text: str, output: str, keyword: str, replacement: str,
                           min_similarity: float = 0.8) -> str | None:
    if has_phrase(output, keyword):
        return f"output still contains the keyword '{keyword}'"
    if not has_phrase(output, replacement):
        return f"output lacks the replacement '{replacement}'"
    expected = re.sub(r"(?<!\w)" + re.escape(keyword) + r"(?!\w)", replacement, text,
                      flags=re.IGNORECASE)
    if (sim := similarity(expected, output)) < min_similarity:
        return f"output changes more than the keyword (similarity {sim:.2f})"
    return None


def check_removed(text: str, output: str, remove: str, min_similarity: float = 0.8) -> str | None:
    item = squash(remove).strip(" .\"'")
    if len(output.strip()) >= len(text.strip()):
        return "output is not shorter than the input"
    if item in squash(output):
        return "output still contains the item to remove"
    rest = re.sub(re.escape(item), " ", squash(text))
    if (sim := similarity(rest, output)) < min_similarity:
        return f"output changes more than the removed item (similarity {sim:.2f})"
    return None


def check_case(text: str, output: str, case: str, min_similarity: float = 0.9) -> str | None:
    if output.strip() == text.strip():
        return "output is a copy of the input"
    letters = [c for c in output if c.isalpha()]
    if not letters:
        return "output has no letters"
    if case == "upper" and any(c.islower() for c in letters):
        return "output has lower-case letters; upper case was asked"
    if case == "lower" and any(c.isupper() for c in letters):
        return "output has capital letters; lower case was asked"
    if case == "title":
        if not any(c.islower() for c in letters):
            return "output is all upper case, not title case"
        if bad := [t for t in tokens(output) if t.isalpha() and len(t) >= 4 and t[0].islower()]:
            return f"title case: '{bad[0]}' does not start with a capital"
    if (sim := similarity(text, output)) < min_similarity:
        return f"output changes the words, not only their case (similarity {sim:.2f})"
    return None


def check_styled(text: str, output: str, markup: str, min_similarity: float = 0.9,
                 max_share: float = 0.6) -> str | None:
    spans = MARKUPS[markup].findall(output)
    if not spans:
        return f"output has no {markup} markup"
    if (sim := similarity(text, strip_markup(output))) < min_similarity:
        return f"styled output changes the words (similarity {sim:.2f})"
    if sum(map(len, spans)) > max_share * len(output):
        return f"{markup} covers most of the text, not its key terms"
    return None


def check_rewritten(text: str, output: str, max_similarity: float = 0.8,
                    min_recall: float = 0.2) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    if (sim := similarity(text, output)) >= max_similarity:
        return f"output keeps the input's wording (similarity {sim:.2f} >= {max_similarity})"
    if (rec := content_recall(text, output)) < min_recall:
        return f"output lost the input's content (keeps {rec:.2f} of its content words)"
    return None


def _written_numbers(text: str) -> int:
    return len(number_words(text)) + len(re.findall(r"\bone\b", text, re.IGNORECASE))


def _without_numbers(text: str) -> str:
    return " ".join(w for w in words(text) if not any(c.isdigit() for c in w)
                    and not set(w.split("-")) & NUMBER_WORDS and w not in {"and", "one"})


def check_normalized(text: str, output: str, rule: str, min_similarity: float = 0.8) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    if rule == "numbers_as_digits":
        if left := number_words(output):
            return "number words remain: " + ", ".join(dict.fromkeys(left))
        if not numbers(output):
            return "output has no digits"
    elif rule == "numbers_as_words":
        if left := numbers(output):
            return "digits remain: " + ", ".join(sorted(left))
        if _written_numbers(output) <= _written_numbers(text):
            return "no numbers were written out in words"
    else:
        return f"unknown normalization rule {rule!r}"
    if (sim := similarity(_without_numbers(text), _without_numbers(output))) < min_similarity:
        return f"normalization changed more than the numbers (similarity {sim:.2f})"
    return None


def check_reworded(text: str, output: str, max_run: int = 4,
                   min_recall: float = 0.25) -> str | None:
    if (run := longest_shared_run(text, output)) > max_run:
        return f"output copies a {run}-word run of the input (> {max_run})"
    if (rec := content_recall(text, output)) < min_recall:
        return f"rewording lost the input's content (keeps {rec:.2f} of its content words)"
    return None


def check_code_switched(text: str, output: str, language: str, min_foreign: int = 2,
                        min_english: float = 0.15, min_recall: float = 0.15) -> str | None:
    foreign = sum(w in FUNCTION_WORDS[language] for w in words(output))
    if foreign < min_foreign:
        return f"no {language} phrases mixed in ({foreign} {language} function words)"
    if (en := stopword_share(output, STOPWORDS)) < min_english:
        return f"output is not mixed: little English left (function-word share {en:.2f})"
    if (rec := content_recall(text, output)) < min_recall:
        return f"output left the input's subject (keeps {rec:.2f} of its content words)"
    return None


def check_obfuscated(text: str, output: str, max_names_left: float = 0.2,
                     min_recall: float = 0.4) -> str | None:
    if not set(PLACEHOLDER.findall(output)) - set(PLACEHOLDER.findall(text)):
        return "output has no [placeholders]"
    if left := numbers(text) & numbers(output):
        return "output still shows the number(s) " + ", ".join(sorted(left))
    names = proper_nouns(text)
    left_names = sorted(n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", output))
    if names and len(left_names) > max_names_left * len(names):
        return "output still names " + ", ".join(left_names[:4])
    rest = " ".join(t for t in tokens(text) if t not in names)
    if (rec := content_recall(rest, output)) < min_recall:
        return f"obfuscation dropped the rest of the text (keeps {rec:.2f} of its content words)"
    return None


def check_entailment(text: str, hypothesis: str, label: str, explanation: str,
                     min_support: float = 0.5) -> str | None:
    if label not in LABELS:
        return f"label '{label}' is not entailment, contradiction or neutral"
    if len(explanation.split()) < 5:
        return "explanation too short"
    if label == "entailment" and (sup := lexical_support(hypothesis, [text])) < min_support:
        return (f"entailment label, but only {sup:.2f} of the hypothesis's content words are "
                "in the text")
    return check_repetition(explanation)


def check_vocabulary(text: str, output: str, knobs: dict[str, Any], max_long: float = 0.05,
                     min_recall: float = 0.15) -> str | None:
    if problem := check_not_copy(text, output):
        return problem
    if knobs.get("rule") == "banned_words":
        if used := [w for w in knobs["banned"] if has_phrase(output, w)]:
            return "output uses banned word(s): " + ", ".join(used)
        kept = content_words(text) - set(knobs["banned"])
        if kept and len(kept & content_words(output)) / len(kept) < min_recall:
            return "rewrite lost the input's content"
    else:
        limit = knobs.get("max_letters", 7)
        n_long, n = long_words(output, limit, proper_nouns(text))
        if n == 0:
            return "output has no words"
        if n_long > max_long * n:
            return f"{n_long} of {n} words are longer than {limit} letters"
        if content_recall(text, output) < min_recall and similarity(text, output) < 0.2:
            return "rewrite lost the input's content"
    return None
