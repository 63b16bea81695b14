"""A failed Nipype node's crash file lands in the test's temporary folder (tests/conftest.py), never
in the checkout."""

from __future__ import annotations

import os

import pytest

from tests.paths import REPO


def _fail(x):
    raise ValueError(f"deliberate failure {x}")


def test_a_crash_file_goes_to_the_tests_tmp_dir(tmp_path, monkeypatch):
    from nipype import Node, Workflow
    from nipype.interfaces.utility import Function

    monkeypatch.chdir(REPO)  # the worst case: a workflow without crashdump_dir run from the checkout
    before = {p.name for p in REPO.glob("crash-*")}
    wf = Workflow(name="crashes", base_dir=str(tmp_path / "work"))
    node = Node(Function(input_names=["x"], output_names=["y"], function=_fail), name="fails")
    node.inputs.x = 1
    wf.add_nodes([node])
    with pytest.raises(RuntimeError):
        wf.run(plugin="Linear")
    crashes = sorted(tmp_path.glob("crash-*"))
    print([p.name for p in crashes])
    assert len(crashes) == 1 and "fails" in crashes[0].name
    assert {p.name for p in REPO.glob("crash-*")} == before
    assert os.getcwd() == str(REPO)
