"""The methods text of a run (``logs/CITATION.md``, pandoc-style ``[@key]`` citations) as HTML for the report.

CITATION.md stays Markdown with citation keys, ready for a manuscript; the report shows it as a reader expects:
paragraphs, ``code``, citations numbered in the order the text first cites them, each number linking to its
entry in the numbered reference list under the text (the entries are those CITATION.md lists, ``- [key] ...``).
"""

from __future__ import annotations

import html
import re

from markupsafe import Markup

#: ``[@synthsr1; @synthsr2]``: one citation group, one or more keys
_CITATION = re.compile(r"\[(@[\w:.-]+(?:\s*;\s*@[\w:.-]+)*)\]")
_REFERENCE = re.compile(r"^- \[([\w:.-]+)\]\s+(.*)$")
_REFERENCES_HEADING = re.compile(r"^#+\s*References\s*$", re.MULTILINE)


def _split(markdown_text: str) -> tuple[str, dict[str, str]]:
    """The text without its title and reference list, and the references by key."""
    match = _REFERENCES_HEADING.search(markdown_text)
    body, tail = (markdown_text[: match.start()], markdown_text[match.end():]) if match else (markdown_text, "")
    references = {}
    for line in tail.splitlines():
        entry = _REFERENCE.match(line.strip())
        if entry:
            references[entry.group(1)] = entry.group(2).strip()
    lines = body.strip().splitlines()
    if lines and lines[0].startswith("# "):  # the page has its own "Methods" heading
        lines = lines[1:]
    return "\n".join(lines).strip(), references


def methods_html(markdown_text: str) -> Markup:
    """``markdown_text`` (a CITATION.md) as safe HTML with numbered, linked citations and references."""
    import markdown

    body, references = _split(markdown_text)
    # the text comes from the workflows' descriptions, which may quote a file name: no raw HTML gets through
    rendered = markdown.markdown(html.escape(body, quote=False), output_format="html")
    numbers: dict[str, int] = {}

    def cite(match: re.Match[str]) -> str:
        keys = [key.strip().lstrip("@") for key in match.group(1).split(";")]
        links = []
        for key in keys:
            number = numbers.setdefault(key, len(numbers) + 1)
            title = html.escape(references.get(key, key))
            links.append(f'<a class="citation" href="#ref-{html.escape(key)}" title="{title}">{number}</a>')
        return "[" + ", ".join(links) + "]"

    rendered = _CITATION.sub(cite, rendered)
    items = "".join(
        f'<li id="ref-{html.escape(key)}">{html.escape(references.get(key, f"{key} (not in the reference list)"))}</li>'
        for key in sorted(numbers, key=numbers.get)
    )
    listing = f'<h3>References</h3><ol class="references">{items}</ol>' if items else ""
    return Markup(f'<div class="methods">{rendered}{listing}</div>')
