"""``--keepgeom`` (``segmentation.run(keep_geometry=True)``): the segmentation on the input's own grid.

mri_synthseg re-reads its 1 mm segmentation with surfa and resamples it like the input image, nearest neighbour
(``save_volume(..., resample_like_image=sf.load_volume(input))``); the posteriors, volumes and QC are unchanged.
The fixtures have no ``--keepgeom`` case (their README, 1.3: surfa's I/O is not covered), so the check is the
reference's own 1 mm segmentation of the case moved onto the input's grid by an independent nearest-neighbour
resampling (nibabel's apply_affine and rounding), at the case's ``min_identical_labels``.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from synthsr_nipype.cli import synthseg
from synthsr_nipype.segmentation.preprocess import resample_like_input

from .checker import DEVSET, FSHOME, SET, cases

pytestmark = pytest.mark.skipif(not SET.is_dir(), reason="../shared/fixtures/synthseg-reference not present")


def _nearest(labels: np.ndarray, affine: np.ndarray, target: nib.Nifti1Image) -> np.ndarray:
    """Independent nearest neighbour: every target voxel's centre through the two affines, rounded."""
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in target.shape[:3]), indexing="ij"), axis=-1)
    src = nib.affines.apply_affine(np.linalg.inv(affine) @ target.affine, ijk.reshape(-1, 3))
    idx = np.rint(src).astype(int)
    inside = np.all((src >= 0) & (idx < np.asarray(labels.shape)), axis=1)
    out = np.zeros(len(idx), dtype=labels.dtype)
    out[inside] = labels[tuple(idx[inside].T)]
    return out.reshape(target.shape[:3])


@pytest.mark.parametrize("name", ["aniso_sform_only", "ms_t2_fast_post"])
def test_keepgeom_output_is_on_the_input_grid_and_agrees_with_the_reference(name, tmp_path, capsys):
    case = next(c for c in cases() if c["name"] == name)
    image = nib.load(SET / case["input"])
    out = tmp_path / "seg.nii.gz"
    rc = synthseg.main(["--i", str(SET / case["input"]), "--o", str(out), "--post", str(tmp_path / "post.nii.gz"),
                        "--fast", "--keepgeom", "--threads", "1", "--models-dir", str(FSHOME / "models")])
    assert rc == 0, capsys.readouterr().err
    ours = nib.load(out)
    assert ours.shape == image.shape[:3] and np.allclose(ours.affine, image.affine, atol=1e-6)
    assert ours.get_data_dtype() == np.int32
    reference = nib.load(DEVSET / "expected" / name / "seg.nii.gz")  # the reference's 1 mm output
    assert reference.shape != image.shape[:3]  # the case was resampled: --keepgeom changes the grid
    # the posteriors stay on the 1 mm grid of the networks, as the reference writes them
    assert nib.load(tmp_path / "post.nii.gz").shape[:3] == reference.shape
    expected = _nearest(np.asarray(reference.dataobj), reference.affine, image)
    labels = np.asarray(ours.dataobj)
    identical = float(np.mean(labels == expected))
    brain = expected > 0
    in_brain = float(np.mean(labels[brain] == expected[brain]))
    print(f"{name}: input {image.shape[:3]}, 1 mm {reference.shape}; --keepgeom labels identical to the "
          f"reference's 1 mm segmentation resampled nearest: {identical:.5f} of voxels, {in_brain:.5f} "
          f"of its labelled ones (min_identical_labels {case['tolerances']['min_identical_labels']})")
    assert identical >= case["tolerances"]["min_identical_labels"]
    assert set(np.unique(labels)) <= set(np.unique(np.asarray(reference.dataobj)))


def test_nearest_rule_of_surfa():
    """Identity keeps the labels; half a voxel rounds away from zero; outside [0, n) is background."""
    labels = np.arange(4 * 3 * 2, dtype=np.int32).reshape(4, 3, 2) + 1
    assert np.array_equal(resample_like_input(labels, np.eye(4), np.eye(4), labels.shape), labels)
    shifted = np.eye(4)
    shifted[0, 3] = 0.5  # target voxel i sits at source position i + 0.5: rounds up to i + 1
    moved = resample_like_input(labels, np.eye(4), shifted, labels.shape)
    assert np.array_equal(moved[:3], labels[1:]) and np.array_equal(moved[3], labels[3])  # n - 0.5 -> n - 1
    before = np.eye(4)
    before[0, 3] = -0.25  # position -0.25 is outside [0, n): background, although it rounds to 0
    assert np.all(resample_like_input(labels, np.eye(4), before, labels.shape)[0] == 0)
