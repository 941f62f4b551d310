"""The command line: help, skill listing, and one clear line + exit code for bad input."""

import subprocess
import sys

import pytest

from engine.cli import EXIT_FATAL, EXIT_USAGE, main


def run_main(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_flag_defaults_to_its_settings_default():
    """A default is written twice, as the flag's (for --help, and the CLI imports no models
    until it runs) and as the setting's (for --config and the API): they must not drift."""
    from engine.cli import FLAG_PATHS, build_parser
    from engine.config import RunConfig

    checked = 0
    for action in build_parser()._actions:
        if action.dest not in FLAG_PATHS or action.default is None:
            continue
        model, *path, name = (RunConfig, *FLAG_PATHS[action.dest])
        for key in path:
            model = type(model.model_fields[key].default)
        field = model.model_fields[name]
        default = field.default_factory() if field.default_factory else field.default
        assert action.default == default, f"--{action.dest}: {action.default!r} vs {default!r}"
        checked += 1
    assert checked >= 25


def test_help_explains_every_flag():
    done = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True,
                          text=True, check=True)
    for flag in ("--skill", "--input", "--out", "--num", "--seed", "--teacher-model",
                 "--teacher-url", "--parallel", "--gpu-layers", "--ctx", "--embedder",
                 "--refine-rounds", "--near-dup-threshold", "--force", "--threads"):
        assert flag in done.stdout, flag


def test_list_skills(capsys):
    code, out, _ = run_main(capsys, "--list-skills")
    assert code == 0
    from agents.registry import load_skill, skill_names

    names = skill_names()
    total = sum(len(load_skill(n).spec.taxonomy) for n in names)
    assert "rag (9 instruction types, 3 transformations, split 'rag')" in out
    assert "- unanswerable:" in out
    assert out.rstrip().endswith(f"{len(names)} skills, {total} instruction types in all")
    for name in names:
        assert f"\n{name} (" in "\n" + out


@pytest.mark.parametrize("argv, needle", [
    (["--num", "0"], "--num"),
    (["--num", "-3"], "--num"),
    (["--parallel", "0"], "--parallel"),
    (["--ctx", "10"], "--ctx"),
    (["--threads", "0"], "--threads"),
    (["--near-dup-threshold", "1.5"], "--near-dup-threshold"),
    (["--chunk-size", "300", "--chunk-overlap", "300"], "--chunk-overlap"),
])
def test_bad_numbers_are_one_clear_line(capsys, corpus, tmp_path, argv, needle):
    code, _, err = run_main(capsys, "--skill", "rag", "--input", str(corpus), "--out",
                            str(tmp_path / "out"), *argv)
    assert code == EXIT_USAGE
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing was created


def test_missing_arguments(capsys):
    code, _, err = run_main(capsys, "--skill", "rag")
    assert code == EXIT_USAGE and "--input" in err and "--out" in err


def test_missing_input_path(capsys, tmp_path):
    code, _, err = run_main(capsys, "--skill", "rag", "--input", str(tmp_path / "nope"),
                            "--out", str(tmp_path / "out"))
    assert code == EXIT_USAGE and "does not exist" in err


def test_unknown_skill(capsys, corpus, tmp_path):
    code, _, err = run_main(capsys, "--skill", "poetry", "--input", str(corpus), "--out",
                            str(tmp_path / "out"))
    assert code == EXIT_USAGE and "unknown skill 'poetry'" in err and "rag" in err


def test_out_is_a_file(capsys, corpus, tmp_path):
    target = tmp_path / "out"
    target.write_text("precious")
    code, _, err = run_main(capsys, "--skill", "rag", "--input", str(corpus), "--out", str(target),
                            "--quiet")
    assert code == EXIT_FATAL and "is a file" in err
    assert target.read_text() == "precious"


def test_corrupt_data_file_is_refused_and_kept(capsys, corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    damaged = '{"id": "a"}\nGARBAGE\n{"id": "b"}\n'
    (out / "data.jsonl").write_text(damaged)
    code, _, err = run_main(capsys, "--skill", "rag", "--input", str(corpus), "--out", str(out),
                            "--quiet")
    assert code == EXIT_FATAL and "data.jsonl:2" in err
    assert (out / "data.jsonl").read_text() == damaged


def test_log_file_in_json_lines(corpus, tmp_path, capsys):
    import json as _json

    log_file = tmp_path / "logs" / "run.jsonl"
    # a bad teacher URL ends the run early, but the log still records what happened
    code = main(["--skill", "rag", "--input", str(corpus), "--out", str(tmp_path / "o"),
                 "--teacher-url", "http://127.0.0.1:9", "--timeout", "2", "--quiet",
                 "--log-file", str(log_file), "--log-format", "json"])
    assert code == 1
    entries = [_json.loads(line) for line in log_file.read_text().splitlines()]
    assert entries and all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert any("index" in e["msg"].lower() or "chunk" in e["msg"].lower() for e in entries)


def test_stage_counts_summarise_rejections():
    from engine.pipeline import RunStats
    from engine.progress import stage_counts

    stats = RunStats()
    stats.reasons.update({"validate: a": 3, "validate: b": 2, "instruct: c": 4, "dedup: d": 1})
    assert stage_counts(stats) == "validate 5 · instruct 4 · dedup 1"
    assert stage_counts(RunStats()) == "-"
