"""The documentation's example (docs/examples/own_workflow.py, shown on the API page) runs as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import pytest

from tests.paths import DEVSET, DOCS, TINY

pytestmark = pytest.mark.skipif(not TINY.is_file(), reason="shared data (../shared) not available")


def test_own_workflow_example_runs(tmp_path):
    """Run as a user would, with a --model relative to the current folder (issue 22: it reached the
    node unresolved and failed there, leaving a crash file in the current folder)."""
    scan = DEVSET / "inputs" / "flair_crop.nii.gz"
    relative_model = os.path.relpath(TINY, tmp_path)
    print("--model", relative_model)
    result = subprocess.run(
        [sys.executable, str(DOCS / "examples" / "own_workflow.py"), str(scan), str(tmp_path / "out"),
         "--model", relative_model, "--work-dir", str(tmp_path / "work")],
        check=False, capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images = list((tmp_path / "out" / "synthsr").glob("*.nii.gz"))
    assert len(images) == 1
    img = nib.load(images[0])
    assert img.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 1.0), abs=1e-4)
    summary = json.loads((tmp_path / "out" / "summary" / "summary.json").read_text())
    assert summary["shape"] == list(img.shape) and summary["above_threshold_ml"] > 0
    assert json.loads(next((tmp_path / "out" / "synthsr").glob("*.json")).read_text())
    assert not list(tmp_path.glob("crash-*")), "crash file left in the current folder"
