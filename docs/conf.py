"""Sphinx configuration: Markdown pages (myst-parser), the Python API (autodoc + napoleon) and the workflow
graphs of the ``.. workflow::`` blocks (docs/_ext/workflow_graph.py, drawn offline with graphviz).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (what .ci/run does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs" / "_ext"))
# nipype's config and the weight cache must not write into the user's home while building
os.environ.setdefault("SYNTHSR_CACHE_DIR", str(REPO / "docs" / "_build" / "cache"))

from synthsr_nipype import __version__  # noqa: E402

project = "synthsr-nipype"
author = "synthsr-nipype developers"
copyright = "synthsr-nipype developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "workflow_graph",  # the `.. workflow::` blocks of the init_*_wf docstrings, drawn with graphviz
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# intersphinx needs the internet; nothing is fetched unless a mapping is given
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}


#: pages the table of contents names that other work is still writing: dropped from it while they are missing
OPTIONAL_PAGES = ("training",)


def _drop_missing_optional_pages(app, docname: str, source: list[str]) -> None:
    if docname != "index":
        return
    for page in OPTIONAL_PAGES:
        if not (Path(app.srcdir) / f"{page}.md").exists():
            source[0] = source[0].replace(f"\n{page}\n", "\n")


def setup(app) -> None:
    app.connect("source-read", _drop_missing_optional_pages)

html_theme = "alabaster"
html_title = f"synthsr-nipype {version}"
html_static_path: list[str] = []
