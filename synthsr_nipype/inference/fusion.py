"""Fusion of several SynthSR outputs of one subject into one volume.

Each output is rigidly registered (antspyx, Mattes mutual information) to the reference
output and resampled onto its grid; the stack is combined voxel-wise (median by default,
robust to one scan with motion or a failed prediction). Deterministic: the registrations run
in a fresh Python process (:func:`synthsr_nipype.isolation.run_isolated`) whose
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` is set before ITK is loaded (ITK reads it once per
process: setting it in a process that already ran ANTs has no effect), with one thread and a
fixed random seed for the metric sampling.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FUSION_METHODS = ("median", "mean")

#: What each synthetic image is registered onto (the fused image lies on its grid): the methods
#: text and the report's captions say it in these words.
REGISTRATION_TARGET = "the synthetic image of the group's reference scan"


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
    reliability: np.ndarray | None = None  # fused reliability map on the reference grid (with ``maps``)


def write_itk_affine(matrix: np.ndarray | None, path: str | os.PathLike) -> Path:
    """Write a 4x4 ITK/LPS affine (``None``: identity) as an ITK text transform file.

    ITK's convention: the transform maps points of the fixed (reference) space to the moving
    image, i.e. what ``antsApplyTransforms -r reference -i moving -t file`` needs to resample
    the moving image onto the reference, like sMRIPrep's ``from-orig_to-T1w_mode-image_xfm.txt``.
    The centre is folded into the translation, so the fixed parameters are zero.
    """
    m = np.eye(4) if matrix is None else np.asarray(matrix, dtype=float)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"expected a finite 4x4 matrix, got shape {m.shape}")
    values = [*m[:3, :3].ravel(), *m[:3, 3]]
    text = (
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {' '.join(f'{v:.17g}' for v in values)}\nFixedParameters: 0 0 0\n"
    )
    out = Path(path)
    out.write_text(text)
    return out


def _as_nifti(image):
    import nibabel as nib

    return nib.load(str(image)) if isinstance(image, (str, os.PathLike)) else image


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
    maps: Sequence[Any] | None = None,
    scans: Sequence[Sequence[ScanGrid]] | None = None,
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
    maps
        Each image's reliability map on its own grid (:mod:`.reliability`): resampled with its
        registration, they give the fused image's map and QC numbers (``metadata["ReliabilityQC"]``).
    scans
        With ``maps``: for each image, the grids of the scans it was made from (:func:`scan_grids`); moved with
        its registration, they give the fused image's ``UncoveredFraction``.

    Returns
    -------
    FusionResult
        The fused image (reference grid and data type), the 4x4 rigid transforms
        (ITK/LPS convention: reference points to moving points, the transform that resamples
        the moving image onto the reference; ``None`` for the reference itself).
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
        result = FusionResult(image=ref_img, transforms=[None], metadata=meta)
        if maps is not None:
            _fused_reliability(result, [_as_nifti(maps[0])], None, np.asarray(ref_img.dataobj, dtype=np.float32),
                               scans)
        return result

    from ..isolation import ants_version, run_isolated

    with tempfile.TemporaryDirectory(prefix="synthsr_fusion_") as tmp:
        paths = []
        for i, img in enumerate(nimgs):
            path = Path(tmp) / f"in{i}.nii"  # uncompressed: temporary, read once
            nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine).to_filename(path)
            paths.append(str(path))
        # A fresh process: the thread count is really `threads` (1: bit-identical reruns).
        reg = run_isolated("synthsr_nipype.inference.fusion_ants", "rigid_to_reference", paths,
                           reference, tmp, num_threads=max(1, int(threads)), **asdict(settings))
        stack = [np.load(p) for p in reg["arrays"]]
        transforms: list[np.ndarray | None] = [
            None if m is None else np.asarray(m, dtype=float) for m in reg["transforms"]
        ]
    data = np.stack(stack, axis=0)
    fused = np.median(data, axis=0) if method == "median" else data.mean(axis=0)
    dtype = np.dtype(ref_img.get_data_dtype())
    out = nib.Nifti1Image(_cast_like(fused, dtype), ref_img.affine, ref_img.header)
    out.set_data_dtype(dtype)
    meta["FusionRegistration"] = {
        "Software": ants_version(),
        "Transform": "Rigid",
        "Metric": settings.metric,
        "WorkingResolutionMM": settings.working_resolution_mm,
        "ShrinkFactors": list(settings.shrink_factors),
        "SmoothingSigmas": list(settings.smoothing_sigmas),
        "Iterations": list(settings.iterations),
        "SamplingRate": settings.sampling_rate,
        "RandomSeed": settings.seed,
        "NumberOfThreads": max(1, int(threads)),
        "Interpolation": "linear",
    }
    result = FusionResult(image=out, transforms=transforms, metadata=meta)
    if maps is not None:
        _fused_reliability(result, [_as_nifti(m) for m in maps], data, fused, scans)
    return result


_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _moving_to_reference(transform: np.ndarray | None) -> np.ndarray:
    """The world (RAS) motion that takes a moving image onto the reference, from :func:`fuse_images`'
    ITK/LPS ``transform`` (reference points to moving points; ``None``: the reference itself)."""
    return np.eye(4) if transform is None else np.linalg.inv(_LPS @ transform @ _LPS)


def map_onto_reference(image: Any, transform: np.ndarray | None, reference: Any) -> np.ndarray:
    """``image`` (a per-scan map) resampled onto ``reference``'s grid with its rigid ``transform`` (ITK/LPS,
    reference points to moving points, as :func:`fuse_images` returns it); linear, 0 outside."""
    import torch

    from .geometry import resample_like

    data = torch.from_numpy(np.asarray(image.dataobj, dtype=np.float64))
    moved = resample_like(data, _moving_to_reference(transform) @ image.affine, tuple(reference.shape[:3]),
                          reference.affine)
    return moved.numpy().astype(np.float32)


#: One acquired scan's grid: its shape, affine and per-axis slice thickness (mm; ``None``: contiguous slices).
ScanGrid = tuple[tuple[int, int, int], np.ndarray, "list[float] | None"]


def scan_grids(paths: Sequence[str | os.PathLike[str]], slice_thickness: Sequence[float] | None = None,
               slice_direction: Sequence[str] | None = None) -> list[ScanGrid]:
    """The grids of the scans (the channels) one SynthSR output was made from, read from their headers, with
    their BIDS ``SliceThickness``/``SliceEncodingDirection`` (0 and ``""`` unknown) as the per-scan map takes
    them (:func:`~synthsr_nipype.inference.reliability.input_thickness`)."""
    import nibabel as nib

    from .reliability import input_thickness

    images = [nib.load(os.fspath(path)) for path in paths]
    affines = [np.asarray(image.affine, dtype=np.float64) for image in images]
    thickness = input_thickness(affines, slice_thickness, slice_direction) or [None] * len(images)
    return [(tuple(int(n) for n in image.shape[:3]), affine, thick)
            for image, affine, thick in zip(images, affines, thickness)]


def distance_on_reference(grids: Sequence[ScanGrid], transform: np.ndarray | None, reference: Any) -> np.ndarray:
    """Per voxel of ``reference``'s grid, the distance (mm) to the nearest slice of the scans that made one
    registered output (``grids``, its channels), through that output's rigid ``transform``."""
    from .reliability import acquisition_coverage

    motion = _moving_to_reference(transform)
    return np.minimum.reduce([
        acquisition_coverage(reference.shape[:3], reference.affine, shape, motion @ affine, thickness).distance_mm
        for shape, affine, thickness in grids])


def _fused_reliability(result: FusionResult, maps: list, stack: np.ndarray | None, fused: np.ndarray,
                       grids: Sequence[Sequence[ScanGrid]] | None) -> None:
    from . import reliability

    ref = result.image
    moved = [map_onto_reference(m, t, ref) for m, t in zip(maps, result.transforms)]
    result.reliability = reliability.fused_reliability(moved, stack, fused)
    brain = reliability.brain_region(fused)
    qc: dict[str, Any] = {"MeanReliability": round(float(result.reliability[brain].mean()), 4) if brain.any() else 0.0,
                          "MeanScansCovering": round(float(reliability.scans_covering(moved)[brain].mean()), 4)
                          if brain.any() else 0.0}
    if grids is not None:
        # as for one scan: no slice of any scan within 2 mm, the scans' grids moved with their registrations
        distance = np.minimum.reduce([distance_on_reference(g, t, ref) for g, t in zip(grids, result.transforms)])
        qc["UncoveredFraction"] = reliability.uncovered_fraction(distance, brain)
    if stack is not None:
        # each registered scan's median absolute difference from the fused image in the brain, normalised like the
        # TTA disagreement: a scan that registered badly (or moved) differs by a large part of the contrast
        scale = reliability.disagreement_scale(fused)
        qc["RegistrationResidual"] = [round(float(np.median(np.abs(s[brain] - fused[brain])) / scale), 4)
                                      for s in stack]
    result.metadata["ReliabilityQC"] = qc
    result.metadata["QCFlags"] = reliability.qc_flags(qc)
