"""Where the read-only shared data lives (../shared from the repository root).

Module-level constants, because ``skipif`` marks and ``parametrize`` lists need them at collection
time; ``tests/conftest.py`` exposes the same paths as fixtures that skip when the data is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEVSET = SHARED / "fixtures" / "tf-reference" / "devset"
MODELS = DEVSET / "models"
TINY = MODELS / "tiny_weights.h5"
REAL = SHARED / "data" / "real"
LABELS = SHARED / "data" / "labels"
EXAMPLES = SHARED / "data" / "bids-examples"
DOCS = REPO / "docs"


def manifest() -> list[dict]:
    return json.loads((DEVSET / "manifest.json").read_text())
