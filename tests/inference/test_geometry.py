"""Torch resampling/blur/orientation against the scipy and numpy code of the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from synthsr_nipype.inference.geometry import (
    align_to_ref,
    gaussian_blur,
    grid_coordinates,
    resample_like,
    resample_to_1mm,
)

RNG = np.random.default_rng(42)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("sigmas", [(0.25, 0.25, 0.25), (0.3125, 0.0, 0.278), (1.5, 1.5, 1.5)])
def test_blur_is_bit_identical_to_scipy(dtype, sigmas):
    data = (RNG.uniform(0, 250, (23, 17, 19))).astype(dtype)
    expected = gaussian_filter(data, sigmas)
    tensor = torch.from_numpy(data.astype(np.int32) if dtype == np.uint16 else data)
    mine = gaussian_blur(tensor, sigmas).numpy()
    assert np.array_equal(mine.astype(expected.dtype), expected)


def _reference_resample(volume, aff, factor):
    """The reference's resample_volume, minus the blur (tested above)."""
    interp = RegularGridInterpolator([np.arange(n) for n in volume.shape], volume, method="linear")
    axes = [grid_coordinates(n, f) for n, f in zip(volume.shape, factor)]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    return interp(tuple(grid))


@pytest.mark.parametrize("sizes", [(5.0, 0.9, 1.0), (0.6, 0.6, 1.2), (1.0000001, 1.0, 2.5),
                                   (0.80000001, 0.8, 2.50000006)])
def test_resampling_matches_regular_grid_interpolator(sizes):
    volume = RNG.uniform(0, 100, (14, 31, 9))
    aff = np.diag([*sizes, 1.0])
    mine, aff2 = resample_to_1mm(torch.from_numpy(volume), aff)
    sigmas = np.where(np.array(sizes) > 1, 0, 0.25 / np.array(sizes))
    expected = _reference_resample(gaussian_filter(volume, sigmas), aff, np.array(sizes))
    assert mine.shape == expected.shape
    np.testing.assert_allclose(mine.numpy(), expected, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(aff2[:3, :3], axis=0), 1.0)


def test_arange_quirk_gives_the_extra_sample():
    # README 3.2: 75 voxels at 0.80000001 mm give 61 samples, and 75 at 0.8 (float32 sform) on axis 1 give 62
    assert len(grid_coordinates(75, 0.80000001)) == 61
    assert len(grid_coordinates(56, 1.0000001)) == 57
    assert len(grid_coordinates(56, 0.9999999)) == 56


def test_resample_like_matches_interpolator_with_zero_fill():
    flo = RNG.uniform(0, 10, (12, 10, 8))
    aff_flo = np.array([[1.5, 0.1, 0, -3], [0, 1.4, 0.2, 2], [0.1, 0, 4.8, -1], [0, 0, 0, 1]])
    aff_ref = np.array([[0, 1.0, 0, -4], [-1.0, 0, 0, 10], [0, 0, 1.0, -2], [0, 0, 0, 1]])
    shape = (16, 20, 30)
    mine = resample_like(torch.from_numpy(flo), aff_flo, shape, aff_ref, chunk_rows=5).numpy()
    interp = RegularGridInterpolator([np.arange(n) for n in flo.shape], flo, bounds_error=False, fill_value=0.0)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    coords = (np.linalg.inv(aff_flo) @ aff_ref @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    expected = interp(coords).reshape(shape)
    np.testing.assert_allclose(mine, expected, rtol=1e-12, atol=1e-12)
    assert (expected == 0).any() and (expected != 0).any()


@pytest.mark.parametrize("affine", [
    np.diag([-1.0, -1.0, 1.0, 1.0]),  # LPS
    np.array([[0, 0, -1.0, 0], [-1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]]),  # PIR
    np.array([[0.9, 0.3, 0, 0], [-0.3, 0.9, 0.1, 0], [0, -0.1, 1.0, 0], [0, 0, 0, 1]]),  # oblique RAS-ish
])
def test_alignment_round_trip(affine):
    volume = torch.from_numpy(RNG.uniform(size=(5, 6, 7)))
    aligned, aff_aligned = align_to_ref(volume, affine, np.eye(4))
    # the aligned affine points along +R, +A, +S
    assert (np.diag(aff_aligned[:3, :3]) > 0).all()
    back, _ = align_to_ref(aligned, np.eye(4), affine)
    assert torch.equal(back, volume)
