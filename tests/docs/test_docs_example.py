"""The documentation's example (docs/examples/own_workflow.py, shown on the API page) runs as written."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import pytest

from tests.paths import DEVSET, DOCS, TINY

pytestmark = pytest.mark.skipif(not TINY.is_file(), reason="shared data (../shared) not available")


def test_own_workflow_example_runs(tmp_path):
    scan = DEVSET / "inputs" / "flair_crop.nii.gz"
    result = subprocess.run(
        [sys.executable, str(DOCS / "examples" / "own_workflow.py"), str(scan), str(tmp_path / "out"),
         "--model", str(TINY), "--work-dir", str(tmp_path / "work")],
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
