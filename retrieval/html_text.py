"""Readable text from messy real-world HTML (docs sites, DocBook output, blogs).

We walk the parsed tree ourselves instead of using `.text()` because the library's text join
either glues block elements together ("Prev6.3. The apt-cache Command") or breaks lines at
every inline tag ("the <code>apt-file</code> command" on three lines). Here block elements start
new lines, inline elements flow, and page chrome (navigation, banners, scripts) is dropped.
"""

from __future__ import annotations

import re
import textwrap

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Whole subtrees that never carry the page's content.
DROPPED_TAGS = frozenset(
    {
        "script", "style", "noscript", "template", "svg", "nav", "header", "footer",
        "aside", "form", "iframe", "object", "embed", "canvas", "head",
    }
)
DROPPED_CLASSES = frozenset({"docnav", "breadcrumb", "breadcrumbs", "navbar", "menu"})
DROPPED_IDS = frozenset({"banner", "nav"})

# Paragraph-like blocks are separated by a blank line, so chunking can cut between them.
PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "blockquote", "table", "ul", "ol", "dl",
        "h1", "h2", "h3", "h4", "h5", "h6", "figure", "figcaption", "details", "fieldset",
        "address", "center", "hr", "title", "caption",
    }
)
# Line-like blocks only need a line break of their own.
LINE_TAGS = frozenset(
    {"li", "tr", "dt", "dd", "br", "summary", "legend", "option", "thead", "tbody", "tfoot"}
)
CELL_TAGS = frozenset({"td", "th"})

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_ANY_WHITESPACE = re.compile(r"\s+")


class _LineBuilder:
    """Collects inline text into lines, with the strongest requested break between them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._current: list[str] = []
        self._gap = 0  # 0: same line, 1: new line, 2: blank line before the next text

    def inline(self, text: str) -> None:
        self._current.append(_ANY_WHITESPACE.sub(" ", text))

    def current_has_text(self) -> bool:
        return any(part.strip() for part in self._current)

    def brk(self, strength: int) -> None:
        line = _SPACES.sub(" ", "".join(self._current)).strip()
        self._current = []
        if line:
            self._append(line)
        self._gap = max(self._gap, strength)

    def preformatted(self, text: str) -> None:
        # Keep code/terminal layout (indentation, line breaks); only trim the edges.
        self.brk(2)
        kept: list[str] = []
        for raw in textwrap.dedent(text.expandtabs(4)).split("\n"):
            line = raw.rstrip()
            if line or (kept and kept[-1]):  # at most one blank line in a row
                kept.append(line)
        while kept and not kept[-1]:
            kept.pop()
        for line in kept:
            if line:
                self._append(line)
            else:
                self.lines.append("")
        self._gap = 2

    def _append(self, line: str) -> None:
        if self.lines and self._gap >= 2 and self.lines[-1] != "":
            self.lines.append("")
        self.lines.append(line)
        self._gap = 0

    def text(self) -> str:
        self.brk(0)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(self.lines)).strip()


def _is_dropped(node: LexborNode) -> bool:
    if node.tag in DROPPED_TAGS:
        return True
    attrs = node.attributes
    if (attrs.get("role") or "").strip().lower() == "navigation":
        return True
    if (attrs.get("id") or "").strip().lower() in DROPPED_IDS:
        return True
    classes = (attrs.get("class") or "").lower().split()
    return any(c in DROPPED_CLASSES for c in classes)


def _walk(node: LexborNode, out: _LineBuilder) -> None:
    # Explicit stack: real pages nest deeply enough to worry about Python's recursion limit.
    stack: list[tuple[LexborNode, bool]] = [(node, False)]
    while stack:
        current, leaving = stack.pop()
        tag = current.tag
        if leaving:
            out.brk(2 if tag in PARAGRAPH_TAGS else 1)
            continue
        if tag == "-text":
            out.inline(current.text_content or "")
            continue
        if tag is None or tag.startswith("-"):  # comments, doctype, processing instructions
            continue
        if _is_dropped(current):
            continue
        if tag == "pre":
            out.preformatted(current.text(deep=True) or "")
            continue
        if tag in CELL_TAGS and out.current_has_text():
            out.inline(" | ")
        is_block = tag in PARAGRAPH_TAGS or tag in LINE_TAGS
        if is_block:
            out.brk(2 if tag in PARAGRAPH_TAGS else 1)
            stack.append((current, True))
        children: list[LexborNode] = []
        child = current.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))


def html_to_text(html: str) -> str:
    """Title on the first line, then the page's readable text; '' when there is none."""
    tree = LexborHTMLParser(html)
    # Only the head's <title>: an inline <svg> may carry its own.
    title_node = tree.head.css_first("title") if tree.head is not None else None
    title = _ANY_WHITESPACE.sub(" ", title_node.text(deep=True) or "").strip() if title_node else ""

    out = _LineBuilder()
    if tree.body is not None:
        _walk(tree.body, out)
    body = out.text()

    if not title:
        return body
    # DocBook and most CMSs repeat the title as the first heading; say it once.
    first_line, _, rest = body.partition("\n")
    if first_line.strip() == title:
        body = rest.lstrip("\n")
    return f"{title}\n\n{body}".strip() if body else title
