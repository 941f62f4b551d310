"""Bad input, table by table. Every case must end in one clear line (what, where, what to do),
the right exit code, and nothing already written lost; files that cannot be documents are
skipped with a reason instead of ending the run.

Real files, FIFOs, sockets, symlinks and subprocesses throughout; runs that must generate use the
scripted teacher (tests/fakes.py) behind the real CLI, embedder, FAISS index and output files.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import engine.run
from engine.cli import EXIT_FATAL, EXIT_USAGE, main
from engine.config import RunConfig
from engine.progress import Progress
from engine.sink import repair_tail
from retrieval.chunking import chunk_document
from retrieval.documents import load_documents
from tests.conftest import write_corpus
from tests.fakes import ScriptedTeacher, rag_replies
from tests.skill_harness import opener
from tests.test_pipeline import on_topic_questions

REPO = Path(__file__).resolve().parents[1]
REAL_RUN = engine.run.run


# ---- helpers ---------------------------------------------------------------------------------


def cli(capsys, argv: list) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *needles: str) -> None:
    """stderr is exactly one line, "error: ...", naming everything in `needles`."""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def args(corpus: Path, out: Path, *extra) -> list:
    # argparse keeps the last of a repeated flag, so `extra` may override --skill/--input/--out
    return ["--skill", "rag", "--input", corpus, "--out", out, "--quiet", *extra]


def teacher() -> ScriptedTeacher:
    # questions about the passage each prompt shows: any question in turn made a run's outcome
    # depend on which item got which question, i.e. on scheduling (it ran out of --max-attempts
    # now and then)
    return ScriptedTeacher(rag_replies(on_topic_questions()), slots=2)


@pytest.fixture
def scripted_cli(monkeypatch):
    """`python -m engine` as is, except that the teacher is the scripted one (a fresh one per
    run) instead of a llama-server."""
    monkeypatch.setattr(engine.run, "run",
                        lambda cfg, progress: REAL_RUN(cfg, progress, opener(teacher())))


def records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


def drop_dac_caps() -> None:
    """Root reads and writes everything, so the child loses the capabilities that let root
    ignore file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) before it starts; it stays uid 0,
    the owner of the test's files, so plain owner permissions decide (PR_CAPBSET_DROP = 24)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)


# ---- 1. usage errors: one line, exit 2, nothing created ---------------------------------------


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


USAGE = [
    ("input_missing", lambda t: ["--input", t / "nope"], ["--input", "nope", "does not exist"]),
    ("input_is_a_fifo", lambda t: ["--input", _fifo(t / "pipe")],
     ["--input", "pipe", "not a regular file or directory"]),
    ("input_is_a_device", lambda t: ["--input", "/dev/zero"],
     ["--input /dev/zero", "not a regular file or directory"]),
    ("unknown_skill", lambda t: ["--skill", "poetry"],
     ["unknown skill 'poetry'", "rag", "--list-skills"]),
    ("empty_skill", lambda t: ["--skill", " "], ["--skill is empty"]),
    ("num_zero", lambda t: ["--num", "0"], ["--num", "greater than or equal to 1"]),
    ("num_negative", lambda t: ["--num", "-3"], ["--num", "greater than or equal to 1"]),
    ("num_not_a_number", lambda t: ["--num", "ten"], ["--num", "invalid int value: 'ten'"]),
    ("parallel_zero", lambda t: ["--parallel", "0"], ["--parallel", "expected 1 to 256 slots or 'auto', got 0"]),
    ("chunk_overlap_not_below_size", lambda t: ["--chunk-size", "300", "--chunk-overlap", "300"],
     ["--chunk-overlap must be smaller than --chunk-size"]),
    ("mix_names_an_unknown_skill", lambda t: ["--mix", "mcq=1"],
     ["--mix names 'mcq'", "not among the skills"]),
    ("mix_weight_does_not_parse", lambda t: ["--mix", "rag=lots"],
     ["--mix", "'rag=lots' is not NAME=WEIGHT"]),
    ("mix_weight_negative", lambda t: ["--mix", "rag=-1"], ["--mix weight for 'rag'", "positive"]),
    ("config_missing", lambda t: ["--config", t / "run.toml"],
     ["--config", "run.toml", "does not exist"]),
    ("config_not_toml", lambda t: ["--config", _write(t / "run.toml", "num = [\n")],
     ["run.toml", "is not valid TOML"]),
    ("config_unknown_key", lambda t: ["--config", _write(t / "run.toml", "nmu = 5\n")],
     ["run.toml: nmu", "unknown setting", "config --dump"]),
    ("config_wrong_type", lambda t: ["--config", _write(t / "run.toml", 'num = "many"\n')],
     ["run.toml: num", "valid integer"]),
    ("config_nested_wrong_type",
     lambda t: ["--config", _write(t / "run.toml", "[teacher]\nparallel = 0\n")],
     ["run.toml: teacher.parallel", "expected 1 to 256 slots"]),
    ("teacher_model_missing", lambda t: ["--teacher-model", t / "model.gguf"],
     ["--teacher-model", "model.gguf", "does not exist", ".gguf"]),
    ("teacher_model_not_gguf",
     lambda t: ["--teacher-model", _write(t / "model.gguf", b"PK\x03\x04 a zip, not a model")],
     ["--teacher-model", "model.gguf", "is not a GGUF file"]),
    ("teacher_model_is_a_folder", lambda t: ["--teacher-model", t],
     ["--teacher-model", "is a folder", ".gguf"]),
    ("decontaminate_missing", lambda t: ["--decontaminate", t / "eval.jsonl"],
     ["--decontaminate", "eval.jsonl", "does not exist"]),
    ("decontaminate_is_a_folder", lambda t: ["--decontaminate", t],
     ["--decontaminate", "is not a file"]),
    ("embedder_missing", lambda t: ["--embedder", t / "minilm"],
     ["--embedder", "minilm", "is not a folder"]),
    ("log_file_is_a_folder", lambda t: ["--log-file", t],
     ["--log-file", "cannot be opened", "writable"]),
]


@pytest.mark.parametrize("extra, needles", [pytest.param(e, n, id=i) for i, e, n in USAGE])
def test_usage_errors_are_one_line_exit_2_and_create_nothing(capsys, corpus, tmp_path, extra,
                                                           needles):
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, args(corpus, out, *extra(tmp_path)))
    assert code == EXIT_USAGE
    one_error_line(err, *needles)
    assert stdout == "" and not out.exists()


# ---- 2. unusable --out or damaged output files: exit 1, every byte kept ----------------------

GOOD = '{"id": "a", "skill": "rag"}\n{"id": "b", "skill": "rag"}\n'

OUT_DAMAGE = [
    # (files to create under tmp_path, extra flags, what the line must say)
    ("out_is_a_file", {"out": "precious"}, [], ["--out", "is a file", "directory"]),
    ("out_parent_is_a_file", {"blocker": "precious"}, ["--out", "{t}/blocker/out"],
     ["cannot write to --out", "blocker/out", "Not a directory"]),
    ("data_jsonl_bad_middle_line", {"out/data.jsonl": '{"id": "a"}\nGARBAGE\n{"id": "b"}\n'}, [],
     ["data.jsonl:2 is not valid JSON", "not changed", "move it aside"]),
    ("data_jsonl_not_utf8", {"out/data.jsonl": GOOD.encode() + b'{"id": "c\xe9"}\n'}, [],
     ["data.jsonl:3 is not UTF-8", "not changed"]),
    ("data_jsonl_record_without_id", {"out/data.jsonl": GOOD + '{"skill": "rag"}\n'}, [],
     ["data.jsonl:3 is not a record with an 'id'", "not changed"]),
    ("data_jsonl_nested_a_mile_deep", {"out/data.jsonl": GOOD + "[" * 100_000 + "\n"}, [],
     ["data.jsonl:3 is not valid JSON", "not changed"]),
    ("rejected_jsonl_bad_line", {"out/rejected.jsonl": '{"id": "r"}\n{oops}\n'}, [],
     ["rejected.jsonl:2 is not valid JSON", "not changed"]),
    ("data_jsonl_is_a_folder", {"out/data.jsonl/keep.txt": "mine"}, [],
     ["data.jsonl", "Is a directory", "re-run"]),
]


@pytest.mark.parametrize("files, extra, needles",
                         [pytest.param(f, e, n, id=i) for i, f, e, n in OUT_DAMAGE])
def test_unusable_output_is_refused_with_one_line_and_kept_byte_for_byte(capsys, corpus, tmp_path,
                                                                         files, extra, needles):
    for rel, content in files.items():
        _write(tmp_path / rel, content)
    before = {rel: (tmp_path / rel).read_bytes() for rel in files}
    argv = args(corpus, tmp_path / "out", *[str(a).format(t=tmp_path) for a in extra])
    code, _, err = cli(capsys, argv)
    assert code == EXIT_FATAL
    one_error_line(err, *needles)
    assert {rel: (tmp_path / rel).read_bytes() for rel in files} == before


def test_alpaca_with_a_multi_turn_skill_is_refused_before_anything_is_written(capsys, corpus,
                                                                             tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(capsys, args(corpus, out, "--skill", "conversation", "--format", "alpaca"))
    assert code == EXIT_FATAL
    one_error_line(err, "--format alpaca", "conversation", "multi-turn", "--format openai")
    assert not out.exists()


def test_out_not_writable_is_one_line_in_a_real_process(corpus):
    """--out is a folder its owner may only read (0o555). Root ignores modes, so the engine runs
    in a child without the DAC-override capabilities (drop_dac_caps)."""
    scratch = Path(tempfile.mkdtemp(prefix="ro-out-"))
    try:
        out = scratch / "out"
        out.mkdir()
        _write(out / "data.jsonl", GOOD)
        out.chmod(0o555)
        done = subprocess.run([sys.executable, "-m", "engine", *map(str, args(corpus, out))],
                              cwd=REPO, preexec_fn=drop_dac_caps, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == EXIT_FATAL, done.stderr[-2000:]
        one_error_line(done.stderr, f"cannot write to --out {out}", "Permission denied",
                       "writable directory")
        assert (out / "data.jsonl").read_text() == GOOD
        assert sorted(p.name for p in out.iterdir()) == ["data.jsonl"]
    finally:
        out.chmod(0o755)
        shutil.rmtree(scratch, ignore_errors=True)


# ---- 3. inputs with no usable document: exit 1, the reason per file ---------------------------


def _html_scripts_only(root: Path) -> None:
    _write(root / "app.html", "<html><head><script>var a = 1;</script></head><body>"
           "<script>document.write('hi')</script><noscript>Enable JS</noscript></body></html>")


NO_DOCUMENTS = [
    ("empty_folder", lambda r: None, ["(no files found)"]),
    ("only_binary_files", lambda r: (_write(r / "logo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\rIHDR"),
                                     _write(r / "dump.md", bytes(range(256)) * 64)),
     ["logo.txt: binary file", "dump.md: binary file"]),
    ("only_a_zero_byte_file", lambda r: _write(r / "notes.txt", b""), ["notes.txt: empty file"]),
    ("only_hidden_and_git_files", lambda r: (_write(r / ".git" / "HEAD", "ref: main\n"),
                                             _write(r / ".notes.md", "# hidden\n")),
     ["(no files found)"]),
    ("html_with_only_scripts", _html_scripts_only, ["app.html: empty after extraction"]),
    ("jsonl_with_only_broken_lines",
     lambda r: _write(r / "corpus.jsonl", '{"text": "unterminated\n[1, 2]\n{"title": "no text"}\n'),
     ["corpus.jsonl: 3 jsonl line(s) skipped", "line(s) 1, 2, 3"]),
    ("only_unsupported_files", lambda r: (_write(r / "scan.pdf", b"%PDF-1.7"),
                                          _write(r / "Makefile", "all:\n")),
     ["Makefile: no file extension", "scan.pdf: unsupported extension .pdf"]),
]


@pytest.mark.parametrize("make, needles", [pytest.param(m, n, id=i) for i, m, n in NO_DOCUMENTS])
def test_input_without_a_usable_document_is_one_line_naming_each_file(capsys, tmp_path, make,
                                                                      needles):
    root = tmp_path / "docs"
    root.mkdir()
    make(root)
    out = tmp_path / "out"
    code, _, err = cli(capsys, args(root, out))
    assert code == EXIT_FATAL
    one_error_line(err, f"no usable documents under {root}", *needles,
                   "point the input at text, markdown, HTML, code or jsonl files")
    assert not (out / "data.jsonl").exists()


# ---- 4. odd files among documents: skipped with a reason, the rest read ------------------------


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())


def _socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(path.parent)  # a relative bind: pytest's tmp paths can pass the 108-byte limit
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
    return sock


LOADING = [
    # (make files under root (tmp_path is root.parent), documents {path: text}, skipped, limit)
    ("latin1_text", lambda r: _write(r / "menu.txt", "Crème brûlée, señor\n".encode("latin-1")),
     {"menu.txt": "Crème brûlée, señor\n"}, {}, None),
    ("utf16_le_with_bom", lambda r: _write(r / "w.md", "naïve – ok\r\nzwei".encode("utf-16")),
     {"w.md": "naïve – ok\nzwei"}, {}, None),
    ("utf16_be_with_bom",
     lambda r: _write(r / "w.txt", codecs.BOM_UTF16_BE + "Grüße\nΩ".encode("utf-16-be")),
     {"w.txt": "Grüße\nΩ"}, {}, None),
    ("utf32_is_not_text",
     lambda r: (_write(r / "ok.txt", "fine\n"), _write(r / "w32.txt", "hi".encode("utf-32"))),
     {"ok.txt": "fine\n"}, {"w32.txt": "not valid UTF-8/UTF-16/latin-1 text"}, None),
    ("zero_byte_and_blank_files_among_good",
     lambda r: (_write(r / "ok.txt", "fine\n"), _write(r / "empty.txt", b""),
                _write(r / "blank.md", " \n\t\n")),
     {"ok.txt": "fine\n"}, {"empty.txt": "empty file", "blank.md": "empty after extraction"}, None),
    ("symlink_loop_between_files",
     lambda r: (_write(r / "ok.txt", "fine\n"), _symlink(r / "a.txt", r / "b.txt"),
                _symlink(r / "b.txt", r / "a.txt")),
     {"ok.txt": "fine\n"}, {"a.txt": "symlink loop", "b.txt": "symlink loop"}, None),
    ("symlinked_folder_looping_to_the_root",
     lambda r: (_write(r / "sub" / "ok.txt", "fine\n"), _symlink(r / "sub" / "again", r)),
     {"sub/ok.txt": "fine\n"},
     {"sub/again": "symlinked folder not followed (its target is inside the input root)"}, None),
    ("symlinks_leaving_the_root_are_not_followed",
     lambda r: (_write(r / "ok.txt", "fine\n"), _write(r.parent / "secret" / "key.txt", "SECRET"),
                _symlink(r / "key.txt", r.parent / "secret" / "key.txt"),
                _symlink(r / "etc", r.parent / "secret")),
     {"ok.txt": "fine\n"},
     {"key.txt": "symlink outside input root", "etc": "symlink outside input root"}, None),
    ("broken_symlink",
     lambda r: (_write(r / "ok.txt", "fine\n"), _symlink(r / "gone.md", r / "deleted.md")),
     {"ok.txt": "fine\n"}, {"gone.md": "broken symlink or file vanished while reading"}, None),
    ("fifo_named_like_a_document",  # a blocking open() would wait for a writer forever
     lambda r: (_write(r / "ok.txt", "fine\n"), _fifo(r / "pipe.txt")),
     {"ok.txt": "fine\n"}, {"pipe.txt": "not a regular file (a named pipe)"}, None),
    ("socket_named_like_a_document",
     lambda r: (_write(r / "ok.txt", "fine\n"), _socket(r / "sock.md")),
     {"ok.txt": "fine\n"}, {"sock.md": "not a regular file (a socket or device)"}, None),
    ("html_with_only_scripts_among_good",
     lambda r: (_write(r / "ok.txt", "fine\n"), _html_scripts_only(r)),
     {"ok.txt": "fine\n"}, {"app.html": "empty after extraction"}, None),
    ("jsonl_broken_lines_are_skipped_and_counted",
     lambda r: _write(r / "c.jsonl", '{"text": "one"}\n{broken\n\n{"content": "four"}\n'
                      '"just a string"\n{"text": ""}\n{"text": "seven"}\n'),
     {"c.jsonl#L1": "one", "c.jsonl#L4": "four", "c.jsonl#L7": "seven"},
     {"c.jsonl": "3 jsonl line(s) skipped (invalid JSON, not an object, or no non-empty string "
      "'text'/'content' field): line(s) 2, 5, 6"}, None),
    ("file_over_the_limit_is_cut_on_a_whole_line_not_inside_a_character",
     # 21-byte lines of 2-byte characters: byte 51 falls inside an "é"
     lambda r: _write(r / "big.txt", ("é" * 10 + "\n") * 10),
     {"big.txt": ("é" * 10 + "\n") * 2},
     {"big.txt": "truncated: only the first 51 bytes of 210 bytes are used; split the file to "
      "use the rest"}, 51),
    ("jsonl_over_the_limit_keeps_only_whole_records",
     lambda r: _write(r / "c.jsonl", "".join(f'{{"text": "record {i}"}}\n' for i in range(9))),
     {f"c.jsonl#L{i + 1}": f"record {i}" for i in range(3)},
     {"c.jsonl": "truncated: only the first 80 bytes of 189 bytes are used; split the file to use "
      "the rest"}, 80),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make, documents, skipped, limit",
                         [pytest.param(m, d, s, lim, id=i) for i, m, d, s, lim in LOADING])
def test_odd_files_are_skipped_with_a_reason_and_the_rest_is_read(tmp_path, make, documents,
                                                                  skipped, limit):
    root = tmp_path / "docs"
    root.mkdir()
    made = make(root)
    kw = {"max_file_bytes": limit} if limit else {}
    docs, skips = load_documents(root, **kw)
    assert {d.path: d.text for d in docs} == documents
    assert {s.path: s.reason for s in skips} == skipped
    for sock in made if isinstance(made, tuple) else (made,):
        if isinstance(sock, socket.socket):
            sock.close()


def test_a_file_that_vanishes_between_listing_and_reading_is_skipped(tmp_path, monkeypatch):
    import retrieval.documents as documents

    root = tmp_path / "docs"
    _write(root / "a.txt", "stays\n")
    _write(root / "b.txt", "deleted by another process\n")
    walk = documents._walk_files

    def walk_then_delete(*a):
        found = walk(*a)
        (root / "b.txt").unlink()  # e.g. an editor's save or a sync client, mid-run
        return found

    monkeypatch.setattr(documents, "_walk_files", walk_then_delete)
    docs, skipped = load_documents(root)
    assert [d.path for d in docs] == ["a.txt"]
    assert {s.path: s.reason for s in skipped} == {
        "b.txt": "broken symlink or file vanished while reading"}


@pytest.mark.parametrize("line", [
    pytest.param(" ".join(f"w{i}" for i in range(500_000)), id="words_without_a_newline"),
    pytest.param("x" * 2_000_000, id="one_token_without_spaces"),  # minified code, base64
])
def test_an_extremely_long_single_line_is_chunked_within_the_size(tmp_path, line):
    _write(tmp_path / "docs" / "one_line.txt", line)
    [doc], skipped = load_documents(tmp_path / "docs")
    assert skipped == [] and doc.text == line
    chunks = chunk_document(doc, 1200, 200)
    assert len(chunks) >= len(line) // 1200
    assert all(c.text == line[c.start:c.end] and 0 < len(c.text) <= 1200 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(line)
    # no gap between neighbours: every character lies in some chunk
    assert all(b.start <= a.end for a, b in zip(chunks, chunks[1:]))


def test_unreadable_file_and_folder_are_skipped_in_a_real_process():
    """Modes 0 on a file and a folder; the loader runs in a child without the capabilities that
    let root ignore them (drop_dac_caps)."""
    root = Path(tempfile.mkdtemp(prefix="perm-"))
    try:
        root.chmod(0o755)
        _write(root / "ok.txt", "plain readable words")
        _write(root / "locked.txt", "hidden").chmod(0)
        _write(root / "private" / "inside.txt", "hidden too")
        (root / "private").chmod(0)
        code = ("import json, sys; from pathlib import Path; from retrieval import load_documents;"
                " d, s = load_documents(Path(sys.argv[1]));"
                " print(json.dumps([[x.path for x in d], {x.path: x.reason for x in s}]))")
        done = subprocess.run([sys.executable, "-c", code, str(root)], preexec_fn=drop_dac_caps,
                              cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
        docs, skipped = json.loads(done.stdout)
    finally:
        (root / "private").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
    assert docs == ["ok.txt"]
    assert skipped == {"locked.txt": "permission denied",
                       "private": "cannot list folder: permission denied"}


PEAK_RSS = """
import json, resource, sys
from pathlib import Path
from retrieval.chunking import chunk_document
from retrieval.documents import load_documents
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
before = rss()
docs, skipped = load_documents(Path(sys.argv[1]))
chunks = [c for d in docs for c in chunk_document(d)]
print(json.dumps({"growth": rss() - before, "chars": sum(len(d.text) for d in docs),
                  "chunks": len(chunks), "skipped": {s.path: s.reason for s in skipped}}))
"""


def test_a_100_mb_text_file_is_read_in_bounded_memory(tmp_path):
    """Loading and chunking a 100 MB file (in a child, to measure its own peak RSS) grows memory
    by less than the file's size: it was never held whole (that took ~370 MiB here). Its first
    16 MiB are used and the cut is reported."""
    big = tmp_path / "docs" / "dump.txt"
    big.parent.mkdir()
    line = b"The river carried silt from the mountains to the delta every spring.\n"
    block = line * (2**20 // len(line))
    with open(big, "wb") as f:
        while f.tell() < 100 * 2**20:
            f.write(block)
    size = big.stat().st_size
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(big.parent)], cwd=REPO,
                          capture_output=True, text=True, check=True, timeout=300)
    big.unlink()
    seen = json.loads(done.stdout)
    assert seen["growth"] < size, seen
    assert 15 * 2**20 < seen["chars"] <= 16 * 2**20 and seen["chunks"] > 10_000
    assert seen["skipped"] == {"dump.txt": "truncated: only the first 16 MiB of "
                               f"{size / 2**20:.0f} MiB are used; split the file to use the rest"}


# ---- 5. a full disk mid-run, and damaged state in --out: resumed, never lost -------------------


def test_disk_full_mid_run_stops_with_one_line_keeps_whole_lines_and_resumes(capsys, corpus,
                                                                            tmp_path, monkeypatch,
                                                                            scripted_cli):
    """The 3rd data.jsonl append hits a full disk the way a real one does: a short write (half
    the line lands), then ENOSPC. Simulated at os.write for that file only."""
    out = tmp_path / "out"
    data = (out / "data.jsonl").resolve()
    real_write = os.write
    appended, torn = [0], []

    def full_disk(fd, payload):
        if os.readlink(f"/proc/self/fd/{fd}") != str(data):
            return real_write(fd, payload)
        if appended[0] < 2:
            appended[0] += 1
            return real_write(fd, payload)
        if not torn:
            torn.append(1)
            return real_write(fd, bytes(payload[: len(payload) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_disk)
    code, _, err = cli(capsys, args(corpus, out, "--num", "4"))
    assert code == EXIT_FATAL and torn
    one_error_line(err, f"writing {out / 'data.jsonl'} failed (No space left on device)",
                   "kept whole", "free space", "re-run the same command")
    kept = (out / "data.jsonl").read_text()
    assert len(records(out / "data.jsonl")) == 2  # the half line was cut back off

    monkeypatch.setattr(os, "write", real_write)  # space freed
    code, _, err = cli(capsys, args(corpus, out, "--num", "4"))
    assert code == 0, err
    final = records(out / "data.jsonl")
    assert (out / "data.jsonl").read_text().startswith(kept)
    assert len(final) == 4 and len({r["id"] for r in final}) == 4


def _torn_tail(out: Path) -> None:
    with open(out / "data.jsonl", "a") as f:
        f.write('{"id": "half-written", "messages": [{"ro')


def _tail_without_newline(out: Path) -> None:
    text = (out / "data.jsonl").read_text()
    (out / "data.jsonl").write_text(text.rstrip("\n"))  # a whole record, only its "\n" missing


def _garbage(rel: str):
    return lambda out: (out / rel).write_bytes(b"\x00garbage\xff" * 10)


OUT_STATE = [
    # (damage done to a finished 2-record run, log line it must leave, records kept from before)
    ("torn_last_line_is_cut", _torn_tail, "repaired data.jsonl: removed a torn last line", 2),
    ("whole_last_record_missing_its_newline_is_kept", _tail_without_newline, None, 2),
    ("dedup_index_garbage_is_rebuilt", _garbage("state/near_dup.faiss"),
     "it will be rebuilt from data.jsonl", 2),
    ("dedup_sidecar_garbage_is_rebuilt", _garbage("state/near_dup.faiss.json"),
     "it will be rebuilt from data.jsonl", 2),
    ("corpus_index_chunks_garbage_is_rebuilt", _garbage("index/chunks.jsonl"), None, 2),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-record run that each damage case copies."""
    root = tmp_path_factory.mktemp("finished")
    corpus = write_corpus(root / "corpus")
    cfg = RunConfig.model_validate({"skill": "rag", "input": corpus, "out": root / "out",
                                    "num": 2})
    asyncio.run(REAL_RUN(cfg, Progress(quiet=True), opener(teacher())))
    return corpus, root / "out"


@pytest.mark.parametrize("damage, warning, kept",
                         [pytest.param(d, w, k, id=i) for i, d, w, k in OUT_STATE])
def test_damaged_state_in_out_is_repaired_and_the_run_resumes_to_num(capsys, tmp_path,
                                                                     finished_run, scripted_cli,
                                                                     damage, warning, kept):
    corpus, pristine = finished_run
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    before = records(pristine / "data.jsonl")
    damage(out)
    code, _, err = cli(capsys, args(corpus, out, "--num", "3"))
    assert code == 0, err
    assert "Traceback" not in err
    if warning:
        assert err.count("\n") == 1 and warning in err, err
    else:
        assert err == ""
    after = records(out / "data.jsonl")
    assert after[:kept] == before[:kept] and len(after) == 3
    assert len({r["id"] for r in after}) == 3
    state = json.loads((out / "state" / "near_dup.faiss.json").read_text())
    assert state["ntotal"] == 3  # the dedup index agrees with data.jsonl again


def test_repair_tail_keeps_a_whole_record_and_cuts_only_debris(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')
    assert repair_tail(path) == 0 and path.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    path.write_text('{"id": "a"}\n["not", "a record"]')
    assert repair_tail(path) == len('["not", "a record"]') and path.read_text() == '{"id": "a"}\n'


def test_good_files_are_used_and_bad_ones_reported_per_file_in_a_run(capsys, tmp_path,
                                                                      scripted_cli):
    corpus = write_corpus(tmp_path / "corpus")
    _write(corpus / "photo.jpg.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    _write(corpus / "empty.md", b"")
    _write(corpus / "widget.html", "<script>track()</script>")
    _write(corpus / "rows.jsonl", '{"text": "The lighthouse at Alexandria stood about 100 metres '
           'tall and guided ships into the harbour for centuries."}\n{not json\n')
    out, log = tmp_path / "out", tmp_path / "run.log"
    code, _, err = cli(capsys, args(corpus, out, "--num", "3", "--log-file", log))
    assert code == 0 and err == "", err
    reasons = {"empty.md": "empty file", "photo.jpg.txt": "binary file",
               "rows.jsonl": "1 jsonl line(s) skipped", "widget.html": "empty after extraction"}
    [said] = [line for line in log.read_text().splitlines() if "skipped 4 file(s): " in line]
    for path, reason in reasons.items():  # the run's log (and its console) name each file
        assert f"{path} ({reason}" in said
    manifest = json.loads((out / "index" / "manifest.json").read_text())
    assert {s["path"]: s["reason"] for s in manifest["skipped"]}.keys() == reasons.keys()
    assert manifest["num_documents"] == 5  # the 4 topics and the good jsonl record
    indexed = {json.loads(c)["doc_path"]
               for c in (out / "index" / "chunks.jsonl").read_text().splitlines()}
    sources = {r["metadata"]["source"]["doc_path"] for r in records(out / "data.jsonl")}
    assert indexed.isdisjoint(reasons) and "rows.jsonl#L1" in indexed
    assert sources and sources <= indexed
