from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from retrieval.documents import load_documents
from retrieval.html_text import html_to_text

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "debian-handbook"

MESSY_PAGE = """<!DOCTYPE html>
<html><head><title>  Widget   Guide </title>
<style>body { color: red }</style><script>var tracking = "SECRET-TRACKER";</script></head>
<body>
<div id="banner"><a href="/get">Download the ebook</a></div>
<header><h1>Site Header</h1></header>
<nav><a href="/">Home</a> <a href="/next">Next page</a></nav>
<ul class="docnav top"><li><a href="p.html"><strong>Prev</strong></a></li></ul>
<div class="breadcrumb">Docs &gt; Widgets</div>
<div role="navigation">Jump to section</div>
<ul class="main menu"><li>Menu entry</li></ul>
<article>
  <h1>Widget Guide</h1>
  <p>Run <code>make   install</code> to <em>build</em>
     the <a href="#w">widget</a> before use.</p>
  <p>Second<br>line break.</p>
  <ul><li>first item</li><li>second item</li></ul>
  <table><tr><th>Name</th><th>Size</th></tr><tr><td>bolt</td><td>M4</td></tr></table>
  <pre>def f():
    return 1</pre>
  <noscript>Enable JavaScript</noscript>
  <form><label>Search</label><input name="q"></form>
</article>
<aside>Related links</aside>
<footer>Copyright footer</footer>
<script>console.log("late script")</script>
</body></html>
"""


def _by_path(root: Path) -> tuple[dict, dict]:
    docs, skipped = load_documents(root)
    return {d.path: d for d in docs}, {s.path: s.reason for s in skipped}


def test_messy_html_keeps_content_and_drops_chrome() -> None:
    text = html_to_text(MESSY_PAGE)
    lines = text.split("\n")
    assert lines[0] == "Widget Guide"
    # Inline tags flow within the sentence, spaces collapsed.
    assert "Run make install to build the widget before use." in lines
    assert "Second" in lines and "line break." in lines
    assert "first item" in lines and "second item" in lines
    assert "Name | Size" in lines and "bolt | M4" in lines
    assert "def f():\n    return 1" in text  # preformatted indentation survives
    for chrome in (
        "SECRET-TRACKER", "color: red", "Download the ebook", "Site Header", "Next page",
        "Prev", "Docs > Widgets", "Jump to section", "Menu entry", "Enable JavaScript",
        "Search", "Related links", "Copyright footer", "late script",
    ):
        assert chrome not in text, chrome
    # The <h1> repeating the title is not emitted twice.
    assert text.count("Widget Guide") == 1
    assert "\n\n\n" not in text


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared sample corpus not present")
def test_real_debian_handbook_page_reads_like_the_chapter() -> None:
    docs, skipped = load_documents(CORPUS / "sect.apt-file.html")
    assert skipped == []
    [doc] = docs
    assert doc.path == "sect.apt-file.html" and doc.kind == "html"
    assert doc.text.startswith("6.4. The apt-file Command\n")
    # A sentence with <code>/<em> inline markup stays whole on one line.
    assert (
        "After the database has been updated, the command apt-file search pattern will list "
        "all packages, which contain a filename or path containing the pattern."
    ) in doc.text.split("\n")
    assert "$ apt-file search bin/axi-cache\napt-xapian-index: /usr/bin/axi-cache" in doc.text
    for chrome in ("Prev", "Next", "Download the ebook", "Product Site", "6.3. The apt-cache Command"):
        assert chrome not in doc.text, chrome


def test_decodings_binary_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café déjà vu, señor".encode("latin-1"))
    (tmp_path / "utf16.txt").write_bytes("naïve résumé – ok\r\nsecond line".encode("utf-16"))
    (tmp_path / "bom.md").write_bytes("\ufeff# Title\n".encode("utf-8"))
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "junk.txt").write_bytes(bytes(range(1, 32)) * 20 + b"\xff\xfe")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text("  \n\t\n")
    (tmp_path / "nav_only.html").write_text("<html><body><nav>Home</nav></body></html>")

    docs, skipped = _by_path(tmp_path)

    assert docs["latin1.txt"].text == "café déjà vu, señor"
    assert docs["utf16.txt"].text == "naïve résumé – ok\nsecond line"
    assert docs["bom.md"].text == "# Title\n" and docs["bom.md"].kind == "markdown"
    assert skipped == {
        "image.txt": "binary file",
        "junk.txt": "not valid UTF-8/UTF-16/latin-1 text",
        "empty.txt": "empty file",
        "blank.md": "empty after extraction",
        "nav_only.html": "empty after extraction",
    }


def test_jsonl_lines_become_documents_and_broken_lines_are_counted(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text(
        '{"text": "first record"}\n'
        "{broken json\n"
        "\n"
        '{"content": "fourth line uses content", "id": 4}\n'
        "[1, 2, 3]\n"
        '{"title": "no text field"}\n'
    )
    docs, skipped = load_documents(tmp_path)
    assert [(d.path, d.kind, d.text) for d in docs] == [
        ("data.jsonl#L1", "jsonl", "first record"),
        ("data.jsonl#L4", "jsonl", "fourth line uses content"),
    ]
    [skip] = skipped
    assert skip.path == "data.jsonl"
    assert skip.reason.startswith("3 jsonl line(s) skipped") and "2, 5, 6" in skip.reason


def test_symlinks_outside_root_and_loops_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside secret")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "inner.txt").write_text("inner text")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "dir_out").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "link_in.txt").symlink_to(root / "sub" / "inner.txt")

    docs, skipped = _by_path(root)

    assert set(docs) == {"link_in.txt", "sub/inner.txt"}
    assert all("outside secret" not in d.text for d in docs.values())
    assert skipped["link_out.txt"] == "symlink outside input root"
    assert skipped["dir_out"] == "symlink outside input root"
    assert "not followed" in skipped["loop"]


def test_walk_is_sorted_skips_hidden_dirs_and_reports_unsupported(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.py").write_text("print('z')\n")
    (tmp_path / "a.rst").write_text("Title\n=====\n")
    (tmp_path / "c.json").write_text('{"k": 1}')
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.txt").write_text("internal")
    (tmp_path / "photo.PNG").write_bytes(b"\x89PNG")
    (tmp_path / "Makefile").write_text("all:\n")

    docs, skipped = load_documents(tmp_path)

    assert [(d.path, d.kind) for d in docs] == [("a.rst", "markdown"), ("b/z.py", "code"), ("c.json", "code")]
    assert {s.path: s.reason for s in skipped} == {
        "photo.PNG": "unsupported extension .png",
        "Makefile": "no file extension",
    }
    assert load_documents(tmp_path) == (docs, skipped)  # deterministic


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_documents(tmp_path / "nope")


def test_unreadable_file_is_reported() -> None:
    """Root reads everything, so the loader runs in a child that loses the capabilities that let
    root ignore file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) before it starts."""
    root = Path(tempfile.mkdtemp(prefix="perm-"))
    try:
        root.chmod(0o755)
        (root / "ok.txt").write_text("plain readable words")
        (root / "ok.txt").chmod(0o644)
        locked = root / "locked.txt"
        locked.write_text("hidden")
        locked.chmod(0)
        code = ("import json, sys; from pathlib import Path; from retrieval import load_documents; "
                "d, s = load_documents(Path(sys.argv[1])); "
                "print(json.dumps([[x.path for x in d], {x.path: x.reason for x in s}]))")
        done = subprocess.run([sys.executable, "-c", code, str(root)], preexec_fn=_drop_dac_caps,
                              cwd=Path(__file__).resolve().parents[1], capture_output=True,
                              text=True, check=True)
        docs, skipped = json.loads(done.stdout)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert docs == ["ok.txt"]
    assert skipped == {"locked.txt": "permission denied"}


def _drop_dac_caps() -> None:
    # PR_CAPBSET_DROP (24): capabilities outside the bounding set are gone after exec, even for root
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        libc.prctl(24, cap, 0, 0, 0)
