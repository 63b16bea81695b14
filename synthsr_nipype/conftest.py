"""Doctests of the package (collected by ``--doctest-modules``, see pyproject.toml): each runs in
an empty temporary folder holding the example files its docstrings name, as niworkflows' does."""

from __future__ import annotations

import pytest

#: the files the docstrings' examples name (empty: interfaces check that inputs exist, nothing reads them)
EXAMPLE_FILES = ("sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz")


@pytest.fixture(autouse=True)
def _doctest_folder(tmp_path, monkeypatch):
    for name in EXAMPLE_FILES:
        (tmp_path / name).touch()
    monkeypatch.chdir(tmp_path)
