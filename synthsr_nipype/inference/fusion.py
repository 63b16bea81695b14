"""Fusion of several SynthSR outputs of one subject into one volume.

Each output is rigidly registered (antspyx, Mattes mutual information) to the reference
output and resampled onto its grid; the stack is combined voxel-wise (median by default,
robust to one scan with motion or a failed prediction). Deterministic: fixed random seed
for the metric sampling and one ITK thread.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FUSION_METHODS = ("median", "mean")
_ITK_THREADS = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


@dataclass(frozen=True)
class RigidSettings:
    """antsRegistration settings (multi-resolution rigid, coarse to fine).

    Registration runs on copies resampled to ``working_resolution_mm`` (2 mm), levels at
    8, 4 and 2 mm: the inputs are smooth 1 mm predictions, and 1 mm levels would triple the
    run time for sub-millimetre changes that a median does not need. The transform is then
    applied to the 1 mm images (transforms live in physical space).
    """

    working_resolution_mm: float = 2.0
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2, 1, 0)
    iterations: tuple[int, ...] = (50, 25, 10)
    metric: str = "mattes"
    sampling_rate: float = 0.1
    seed: int = 20240917


@dataclass
class FusionResult:
    image: Any  # nibabel.Nifti1Image on the reference grid
    transforms: list[np.ndarray | None] = field(default_factory=list)  # per input, 4x4 (LPS)
    metadata: dict[str, Any] = field(default_factory=dict)


def _as_nifti(image):
    import nibabel as nib

    return nib.load(str(image)) if isinstance(image, (str, os.PathLike)) else image


@contextmanager
def _deterministic_ants(seed: int, threads: int) -> Iterator[None]:
    """Fixed seed and thread count for antsRegistration, restored afterwards.

    ITK reads its default thread count from the environment; antspyx passes its global seed
    to antsRegistration as ``--random-seed``. Both are process-wide, so they are put back
    for the rest of the process (other ANTs users, or a worker that runs other nodes).
    """
    import ants.config

    old_env = os.environ.get(_ITK_THREADS)
    old = (ants.config._deterministic, ants.config._random_seed)
    # Set the fields directly: set_ants_deterministic() would also reseed numpy's global RNG.
    ants.config._deterministic, ants.config._random_seed = True, seed
    os.environ[_ITK_THREADS] = str(max(1, int(threads)))
    try:
        yield
    finally:
        ants.config._deterministic, ants.config._random_seed = old
        if old_env is None:
            os.environ.pop(_ITK_THREADS, None)
        else:
            os.environ[_ITK_THREADS] = old_env


def _cast_like(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype)


def fuse_images(
    images: Sequence[Any],
    *,
    reference: int = 0,
    method: str = "median",
    threads: int = 1,
    settings: RigidSettings = RigidSettings(),
) -> FusionResult:
    """Register ``images`` rigidly to ``images[reference]`` and combine them voxel-wise.

    Parameters
    ----------
    images
        nibabel images or paths (SynthSR outputs of one subject and session).
    reference
        Index of the image whose grid the result lives on.
    method
        ``"median"`` (default) or ``"mean"``.
    threads
        ITK threads for registration (1 gives bit-identical results across runs).

    Returns
    -------
    FusionResult
        The fused image (reference grid and data type), the 4x4 rigid transforms
        (ITK/LPS convention, moving→reference; ``None`` for the reference itself).
    """
    import nibabel as nib

    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method must be one of {FUSION_METHODS}, not {method!r}")
    if not images:
        raise ValueError("no image to fuse")
    if not 0 <= reference < len(images):
        raise ValueError(f"reference index {reference} out of range for {len(images)} images")
    nimgs = [_as_nifti(im) for im in images]
    ref_img = nimgs[reference]
    meta: dict[str, Any] = {
        "FusionMethod": method if len(nimgs) > 1 else "pass-through",
        "FusionInputs": len(nimgs),
        "FusionReferenceIndex": reference,
    }
    if len(nimgs) == 1:
        return FusionResult(image=ref_img, transforms=[None], metadata=meta)

    import ants

    stack: list[np.ndarray] = []
    transforms: list[np.ndarray | None] = []
    with _deterministic_ants(settings.seed, threads), tempfile.TemporaryDirectory(
        prefix="synthsr_fusion_"
    ) as tmp:
        paths = []
        for i, img in enumerate(nimgs):
            path = Path(tmp) / f"in{i}.nii"  # uncompressed: temporary, read once
            nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine).to_filename(path)
            paths.append(path)
        fixed = ants.image_read(str(paths[reference]))
        res = (settings.working_resolution_mm,) * 3
        fixed_low = ants.resample_image(fixed, res, use_voxels=False, interp_type=0)
        for i, path in enumerate(paths):
            if i == reference:
                stack.append(fixed.numpy())
                transforms.append(None)
                continue
            moving = ants.image_read(str(path))
            reg = ants.registration(
                fixed_low,
                ants.resample_image(moving, res, use_voxels=False, interp_type=0),
                type_of_transform="Rigid",
                aff_metric=settings.metric,
                aff_random_sampling_rate=settings.sampling_rate,
                aff_iterations=settings.iterations,
                aff_shrink_factors=settings.shrink_factors,
                aff_smoothing_sigmas=settings.smoothing_sigmas,
                outprefix=str(Path(tmp) / f"reg{i}_"),
            )
            warped = ants.apply_transforms(
                fixed, moving, transformlist=reg["fwdtransforms"], interpolator="linear"
            )
            stack.append(warped.numpy())
            tx = ants.read_transform(reg["fwdtransforms"][0])
            matrix = np.eye(4)
            params = np.asarray(tx.parameters, dtype=float)
            matrix[:3, :3] = params[:9].reshape(3, 3)
            center = np.asarray(tx.fixed_parameters, dtype=float)[:3]
            # ITK affines rotate about a fixed centre: fold it into the translation.
            matrix[:3, 3] = params[9:12] + center - matrix[:3, :3] @ center
            transforms.append(matrix)
    data = np.stack(stack, axis=0)
    fused = np.median(data, axis=0) if method == "median" else data.mean(axis=0)
    dtype = np.dtype(ref_img.get_data_dtype())
    out = nib.Nifti1Image(_cast_like(fused, dtype), ref_img.affine, ref_img.header)
    out.set_data_dtype(dtype)
    meta["FusionRegistration"] = {
        "Software": f"antspyx {getattr(ants, '__version__', '')}".strip(),
        "Transform": "Rigid",
        "Metric": settings.metric,
        "WorkingResolutionMM": settings.working_resolution_mm,
        "ShrinkFactors": list(settings.shrink_factors),
        "SmoothingSigmas": list(settings.smoothing_sigmas),
        "Iterations": list(settings.iterations),
        "SamplingRate": settings.sampling_rate,
        "RandomSeed": settings.seed,
        "Interpolation": "linear",
    }
    return FusionResult(image=out, transforms=transforms, metadata=meta)
