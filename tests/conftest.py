"""Shared test fixtures: paths into ../shared (read-only) and small helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEVSET = SHARED / "fixtures" / "tf-reference" / "devset"
MODELS = DEVSET / "models"
TINY = MODELS / "tiny_weights.h5"


def manifest() -> list[dict]:
    return json.loads((DEVSET / "manifest.json").read_text())


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session converts weights into its own cache, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "weight-cache"
    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(cache))
    yield
