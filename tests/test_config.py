"""--config run.toml: the same schema as the flags, flags win, errors name the key path;
`config --dump` prints the effective configuration as a file --config accepts."""

import tomllib
from pathlib import Path

import pytest

from engine.cli import build_parser, config_from_args, given_flags, main

REPO = Path(__file__).resolve().parents[1]


def effective(argv):
    return config_from_args(build_parser().parse_args(argv), given_flags(argv))


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_file_values_are_used_and_flags_override_them(tmp_path):
    path = write(tmp_path, 'skill = "rag"\ninput = "docs"\nout = "o"\nnum = 7\n'
                           '[teacher]\nparallel = 6\n[flow]\nrefine_rounds = 2\n')
    cfg = effective(["--config", str(path)])
    assert (cfg.num, cfg.teacher.parallel, cfg.flow.refine_rounds) == (7, 6, 2)
    cfg = effective(["--config", str(path), "--num", "3", "--parallel", "2"])
    assert (cfg.num, cfg.teacher.parallel, cfg.flow.refine_rounds) == (3, 2, 2)
    # a flag left at its default does not override the file
    assert effective(["--config", str(path), "--seed", "0"]).num == 7


def test_the_answer_temperature_is_the_skills_unless_a_flag_or_file_sets_it(tmp_path):
    base = ["--skill", "rag", "--input", "docs", "--out", "o"]
    assert effective(base).flow.answer_temperature is None  # each skill.toml's own
    assert effective([*base, "--answer-temperature", "0.4"]).flow.answer_temperature == 0.4
    path = write(tmp_path, 'skill = "rag"\ninput = "docs"\nout = "o"\n'
                           '[flow]\nanswer_temperature = 0.3\n')
    assert effective(["--config", str(path)]).flow.answer_temperature == 0.3


@pytest.mark.parametrize("text, message", [
    ('skill = "rag"\ninput = "d"\nout = "o"\n[teacher]\nparalel = 4\n',
     "run.toml: teacher.paralel: Extra inputs are not permitted"),
    ('skill = "rag"\ninput = "d"\nout = "o"\n[flow]\nrefine_rounds = 99\n',
     "run.toml: flow.refine_rounds: Input should be less than or equal to 5"),
    ('skill = "rag"\ninput = "d"\nout = "o"\nnum = "many"\n', "run.toml: num:"),
    ('skill = "rag"\ninput = "d"\nout = "o"\nbogus = 1\n', "run.toml: bogus: Extra inputs"),
    ('skill = "rag"\ninput = "d"\n', "missing --out"),
    ('skill = "rag"\ninput = [', "is not valid TOML"),
])
def test_bad_config_files_name_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_flag_error_names_the_flag_even_with_a_config(tmp_path, capsys):
    path = write(tmp_path, 'skill = "rag"\ninput = "d"\nout = "o"\n')
    assert main(["--config", str(path), "--parallel", "0"]) == 2
    assert "--parallel:" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_dump_round_trips_and_hides_the_api_key(tmp_path, capsys):
    argv = ["--skill", "rag,mcq", "--mix", "rag=2,mcq=1", "--input", "docs", "--out", "o",
            "--teacher-url", "http://127.0.0.1:9", "--teacher-api-key", "sekret", "--num", "9"]
    assert main(["config", "--dump", *argv]) == 0
    dumped = capsys.readouterr().out
    assert "sekret" not in dumped and "api_key is set but not printed" in dumped
    values = tomllib.loads(dumped)
    assert values["mix"] == {"rag": 2.0, "mcq": 1.0} and values["num"] == 9
    path = write(tmp_path, dumped)
    assert main(["config", "--dump", "--config", str(path)]) == 0
    assert capsys.readouterr().out == dumped.split("\n", 1)[1]  # same, minus the key note


@pytest.mark.parametrize("preset", sorted((REPO / "examples" / "configs").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_teacher_presets_are_valid(preset, capsys):
    assert main(["config", "--dump", "--config", str(preset)]) == 0
    values = tomllib.loads(capsys.readouterr().out)
    assert values["teacher"]["backend"] in {"auto", "server", "url"}
