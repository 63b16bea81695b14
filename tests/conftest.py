"""Shared test fixtures: the weight-cache isolation and the ../shared paths (read-only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import DEVSET, EXAMPLES, REAL, SHARED, TINY


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session converts weights into its own cache, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "weight-cache"
    monkeypatch.setenv("SYNTHSR_CACHE_DIR", str(cache))
    yield


@pytest.fixture(autouse=True)
def _crashdump_in_tmp(tmp_path):
    """Nipype writes a failed node's crash file into its ``crashdump_dir`` (default: the current
    folder, the checkout): each test's go into its own temporary folder (as smriprep's conftest)."""
    from nipype import config

    old = config.get("execution", "crashdump_dir")  # nipype's default: the folder it was imported from
    config.set("execution", "crashdump_dir", str(tmp_path))
    yield
    config.set("execution", "crashdump_dir", old)


def _existing(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared``: fixtures and data shared by all worktrees."""
    return _existing(SHARED)


@pytest.fixture(scope="session")
def devset() -> Path:
    """The TensorFlow-reference development set (inputs, expected outputs, models)."""
    return _existing(DEVSET)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny Keras fixture network (seconds per volume on a CPU)."""
    return _existing(TINY)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Real scans: hires-t1, ms-clinical, stroke-t2, py_synthsr."""
    return _existing(REAL)


@pytest.fixture(scope="session")
def bids_examples() -> Path:
    """The bids-examples layouts."""
    return _existing(EXAMPLES)
