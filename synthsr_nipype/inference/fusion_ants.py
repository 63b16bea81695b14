"""The fusion's rigid registrations, run inside a fresh worker process.

Imported only by the worker of :mod:`synthsr_nipype.isolation`, after
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` is set (one thread + a fixed seed: identical reruns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ants
import numpy as np


def rigid_to_reference(
    paths: list[str],
    reference: int,
    out_dir: str,
    *,
    seed: int,
    working_resolution_mm: float,
    metric: str,
    sampling_rate: float,
    iterations: list[int],
    shrink_factors: list[int],
    smoothing_sigmas: list[float],
) -> dict[str, Any]:
    """Rigid registration of every image to ``paths[reference]``, for the fusion of SynthSR outputs.

    Used by :func:`synthsr_nipype.inference.fusion.fuse_images` through
    :func:`synthsr_nipype.isolation.run_isolated`. Registration on copies resampled to
    ``working_resolution_mm``; each image (the reference as it is) is resampled onto the
    reference grid (linear) and saved as ``.npy`` (ANTs voxel order = nibabel's). Returns the
    array paths and the 4x4 moving→reference matrices (ITK/LPS; ``None`` for the reference).
    """
    ants.config.set_ants_deterministic(True, seed)
    out = Path(out_dir)
    fixed = ants.image_read(paths[reference])
    res = (float(working_resolution_mm),) * 3
    fixed_low = ants.resample_image(fixed, res, use_voxels=False, interp_type=0)
    arrays: list[str] = []
    transforms: list[list[list[float]] | None] = []
    for i, path in enumerate(paths):
        array_path = out / f"resampled{i:03d}.npy"
        if i == reference:
            np.save(array_path, fixed.numpy())
            arrays.append(str(array_path))
            transforms.append(None)
            continue
        moving = ants.image_read(path)
        reg = ants.registration(
            fixed_low,
            ants.resample_image(moving, res, use_voxels=False, interp_type=0),
            type_of_transform="Rigid",
            aff_metric=metric,
            aff_random_sampling_rate=sampling_rate,
            aff_iterations=tuple(iterations),
            aff_shrink_factors=tuple(shrink_factors),
            aff_smoothing_sigmas=tuple(smoothing_sigmas),
            outprefix=str(out / f"reg{i:03d}_"),
        )
        warped = ants.apply_transforms(fixed, moving, transformlist=reg["fwdtransforms"], interpolator="linear")
        np.save(array_path, warped.numpy())
        arrays.append(str(array_path))
        tx = ants.read_transform(reg["fwdtransforms"][0])
        matrix = np.eye(4)
        params = np.asarray(tx.parameters, dtype=float)
        matrix[:3, :3] = params[:9].reshape(3, 3)
        center = np.asarray(tx.fixed_parameters, dtype=float)[:3]
        # ITK affines rotate about a fixed centre: fold it into the translation.
        matrix[:3, 3] = params[9:12] + center - matrix[:3, :3] @ center
        transforms.append(matrix.tolist())
    return {"arrays": arrays, "transforms": transforms}
