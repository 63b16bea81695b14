"""Simulate clinical thick-slice acquisitions from a 1 mm volume (demo data, tests, benchmarks)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter


def simulate_acquisition(image: nib.Nifti1Image, voxel_size: tuple[float, float, float],
                         tilt_degrees: float = 0.0, noise: float = 0.0, seed: int = 0,
                         thickness: tuple[float, float, float] | None = None) -> nib.Nifti1Image:
    """Resample ``image`` to an anisotropic grid (optionally tilted about the first axis).

    The slice profile is a Gaussian of FWHM = ``thickness`` along each axis (default: the new voxel size, i.e.
    contiguous slices; a thickness under the spacing leaves slice gaps), then linear sampling at the new voxel
    centres; int16 output, like most scanners write.
    """
    data = np.asarray(image.dataobj, dtype=np.float32)
    src_sizes = np.asarray(image.header.get_zooms()[:3], dtype=np.float64)
    target = np.asarray(voxel_size, dtype=np.float64)
    profile = target if thickness is None else np.asarray(thickness, dtype=np.float64)
    fwhm_vox = np.maximum(profile / src_sizes, 1.0)
    blurred = gaussian_filter(data, np.sqrt(np.maximum(fwhm_vox**2 - 1, 0)) / 2.3548)
    angle = np.deg2rad(tilt_degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    shape = np.ceil(np.array(data.shape) * src_sizes / target).astype(int)
    centre_in = (np.array(data.shape) - 1) / 2.0
    centre_out = (shape - 1) / 2.0
    # output voxel -> input voxel: scale to mm, rotate about the centre, back to input voxels
    matrix = np.diag(1 / src_sizes) @ rotation @ np.diag(target)
    offset = centre_in - matrix @ centre_out
    resampled = affine_transform(blurred, matrix, offset=offset, order=1, output_shape=tuple(shape))
    if noise > 0:
        resampled += np.random.default_rng(seed).normal(0, noise * float(resampled.max()), resampled.shape)
    vox_to_vox = np.eye(4)
    vox_to_vox[:3, :3], vox_to_vox[:3, 3] = matrix, offset
    affine = image.affine @ vox_to_vox
    # scanners store integers; spread the intensities over a typical 12-bit range before rounding
    resampled *= 1000.0 / max(float(np.abs(resampled).max()), 1e-12)
    out = nib.Nifti1Image(np.rint(resampled).astype(np.int16), affine)
    out.header.set_xyzt_units("mm", "sec")
    return out
