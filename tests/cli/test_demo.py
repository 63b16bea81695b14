"""The README's first command, `synthsr-demo`, with the tiny fixture network (seconds)."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np

from synthsr_nipype.cli import demo
from tests.paths import TINY


def test_demo_writes_scan_output_and_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--model", str(TINY), "--out", str(out), "--threads", "1"]) == 0
    clinical = nib.load(out / "clinical_5mm_axial.nii.gz")
    assert np.allclose(sorted(clinical.header.get_zooms()[:3]), [1.0, 1.0, 5.0], atol=1e-3)
    synthetic = nib.load(out / "clinical_5mm_axial_synthsr.nii.gz")
    assert np.allclose(synthetic.header.get_zooms()[:3], 1.0, atol=1e-3)
    assert synthetic.get_data_dtype() == np.uint8 and np.asanyarray(synthetic.dataobj).max() > 0
    png = (out / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    printed = capsys.readouterr().out
    assert "side-by-side figure" in printed and str(out) in printed
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing half-written left


def test_demo_missing_model_is_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "synthsr_nipype.cli.demo", "--model",
                             str(tmp_path / "absent.h5"), "--out", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR:") and "absent.h5" in lines[0]
    assert not (tmp_path / "demo").exists()  # nothing written before the model was found
