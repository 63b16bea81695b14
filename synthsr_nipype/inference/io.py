"""Reading images with the checks the reference lacks (outputs are written by :mod:`synthsr_nipype.atomic`)."""

from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..errors import InputImageError
from .checks import HeaderWarning, affine_problem, data_problem, header_problem, header_warnings

MAX_CHANNELS = 10


@dataclass
class InputVolume:
    """A validated 3-D volume with what the writer needs from its source."""

    data: np.ndarray  # on-disk dtype (float64 when the header scales), 3-D
    affine: np.ndarray
    header: nib.Nifti1Header
    source: str


def source_name(image: "nib.spatialimages.SpatialImage | str | os.PathLike[str]") -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return image.get_filename() or "<in-memory image>"


def load_volume(image: "nib.spatialimages.SpatialImage | str | os.PathLike[str]") -> InputVolume:
    """Load like the reference (``get_data()`` then squeeze) and refuse what it would choke on
    (the checks are :mod:`synthsr_nipype.inference.checks`, shared with the BIDS-App); what it
    processes anyway (qform/sform disagreement, no qform/sform) is a :class:`HeaderWarning`."""
    name = source_name(image)
    problem = header_problem(image, max_frames=MAX_CHANNELS)
    if problem:
        raise InputImageError(name, problem)
    for note in header_warnings(image):
        warnings.warn(HeaderWarning(name, note), stacklevel=2)
    if isinstance(image, (str, os.PathLike)):
        try:
            image = nib.load(image)
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for non-images
            raise InputImageError(name, f"not a readable NIfTI/MGH image ({_short(exc)})") from None
    try:
        data = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, OSError, ValueError) as exc:
        raise InputImageError(name, f"image data cannot be read, file truncated or corrupted ({_short(exc)})") from None
    data = np.squeeze(data)
    if data.ndim == 4:
        warnings.warn(HeaderWarning(name, "detected more than 1 channel, only keeping the first channel"),
                      stacklevel=2)
        data = data[..., 0]
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputImageError(name, f"unsupported voxel type {data.dtype}")
    problem = data_problem(data)
    if problem:
        raise InputImageError(name, problem)
    affine = np.asarray(image.affine, dtype=np.float64)
    check_affine(affine, name)
    return InputVolume(data=data, affine=affine, header=image.header, source=name)


def check_affine(affine: np.ndarray, name: str) -> None:
    """Raise :class:`InputImageError` when ``affine`` cannot place the image (see :func:`affine_problem`)."""
    problem = affine_problem(affine)
    if problem:
        raise InputImageError(name, problem)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
