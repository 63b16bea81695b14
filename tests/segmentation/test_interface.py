"""The SynthSeg Nipype interface: the API's outputs under the node's names."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from .checker import DEVSET, FSHOME, SET, cases

pytestmark = pytest.mark.skipif(not SET.is_dir(), reason="../shared/fixtures/synthseg-reference not present")


def test_node_writes_the_reference_segmentation_and_volumes(tmp_path):
    from synthsr_nipype.interfaces.synthseg import SynthSeg

    case = next(c for c in cases() if c["name"] == "ms_t2_fast_post")
    node = SynthSeg(in_file=str(SET / case["input"]), fast=True, posteriors=True, models_dir=str(FSHOME / "models"))
    res = node.run(cwd=str(tmp_path))
    out = res.outputs
    ours = np.asarray(nib.load(out.out_seg).dataobj)
    ref = np.asarray(nib.load(DEVSET / "expected" / case["name"] / "seg.nii.gz").dataobj)
    assert np.mean(ours == ref) >= case["tolerances"]["min_identical_labels"]
    with open(out.out_volumes, newline="") as handle:
        header, row = list(csv.reader(handle))
    assert header[1:] == list(out.volumes) and header[1] == "total intracranial"
    assert row[0] == "ms_t2_small12"
    assert np.allclose([float(v) for v in row[1:]], list(out.volumes.values()), rtol=1e-6)
    assert nib.load(out.out_posteriors).shape == (*ours.shape, 33)
    assert out.version == "SynthSeg 2.0 (fast)" and out.qc_scores == {}
