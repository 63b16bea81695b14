"""The CLI reference in docs/ is generated from the parser and must be up to date."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.paths import DOCS


def test_cli_reference_is_current():
    result = subprocess.run([sys.executable, str(DOCS / "gen_cli_docs.py"), "--check"],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "40"})
    assert result.returncode == 0, result.stderr


def test_bids_app_doc_covers_outputs_and_grouping():
    text = (DOCS / "bids-app.md").read_text()
    for topic in ("desc-synthsr", "reference", "--dry-run", "Exit codes", "CITATION.md",
                  "cli-synthsr-bids.md", "SkullStripped"):
        assert topic in text
