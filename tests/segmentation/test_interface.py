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


def test_node_sums_the_posteriors_into_tissues_and_direct_classes(tmp_path):
    """tissue_probsegs: CSF, GM, WM, each the sum of the 4-D posteriors' channels of the labels the dseg.tsv maps
    to it; thickness_posteriors: the cortex and the WM + deep structures of morphometry.thickness."""
    from synthsr_nipype.interfaces.synthseg import SynthSeg
    from synthsr_nipype.morphometry.freesurfer import onto_grid
    from synthsr_nipype.morphometry.labels import tissue_labels
    from synthsr_nipype.morphometry.thickness import SYNTHSEG_DIRECT
    from synthsr_nipype.segmentation.tables import load_tables

    case = next(c for c in cases() if c["name"] == "ms_t2_fast_post")
    node = SynthSeg(in_file=str(SET / case["input"]), fast=True, posteriors=True, tissue_probsegs=True,
                    thickness_posteriors=True, models_dir=str(FSHOME / "models"))
    out = node.run(cwd=str(tmp_path)).outputs
    post_img = nib.load(out.out_posteriors)
    post = np.nan_to_num(np.asarray(post_img.dataobj, dtype=np.float32))
    channel = {int(lab): k for k, lab in enumerate(load_tables().labels)}
    in_img = nib.load(SET / case["input"])
    wanted = [*(tissue_labels()[t] for t in ("CSF", "GM", "WM")), SYNTHSEG_DIRECT["GM"], SYNTHSEG_DIRECT["WM"]]
    files = [*out.probsegs, out.thickness_gm, out.thickness_wm]
    for labels, path in zip(wanted, files):
        img = nib.load(path)
        want = post[..., [channel[i] for i in labels if i in channel]].sum(-1)
        # this input (0.5 x 0.5 x 4 mm) was resampled to 1 mm by SynthSeg: the sums go back onto its grid
        assert img.shape == in_img.shape[:3] and np.allclose(img.affine, in_img.affine)
        want = np.clip(onto_grid(want, post_img.affine, in_img, order=1), 0, 1)
        assert np.allclose(img.get_fdata(), want, atol=1e-5), path
        print(path.rsplit("/", 1)[-1], f"mean {img.get_fdata().mean():.4f}")
    total = sum(nib.load(p).get_fdata() for p in out.probsegs)
    assert total.max() <= 1 + 1e-5 and total.max() > 0.5
