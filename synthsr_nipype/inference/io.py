"""Reading images with the checks the reference lacks, and writing outputs atomically."""

from __future__ import annotations

import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputImageError
from .geometry import voxel_sizes

MAX_CHANNELS = 10
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz")


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
    """Load like the reference (``get_data()`` then squeeze) and refuse what it would choke on."""
    name = source_name(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise InputImageError(name, "file does not exist")
        if path.is_dir():
            raise InputImageError(name, "is a folder, not an image")
        try:
            image = nib.load(path)
        except Exception as exc:  # nibabel raises many types for non-images
            raise InputImageError(name, f"not a readable NIfTI/MGH image ({_short(exc)})") from None
    try:
        data = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, OSError, ValueError) as exc:
        raise InputImageError(name, f"image data cannot be read, file truncated or corrupted ({_short(exc)})") from None
    data = np.squeeze(data)
    if data.ndim < 3:
        raise InputImageError(name, f"image is {data.ndim}-D (shape {data.shape}); SynthSR needs a 3-D volume")
    if data.ndim == 4:
        if data.shape[-1] <= MAX_CHANNELS:
            warnings.warn(f"{name}: detected more than 1 channel, only keeping the first channel", stacklevel=2)
            data = data[..., 0]
        else:
            raise InputImageError(name, f"image is 4-D with {data.shape[-1]} frames; give one 3-D volume")
    elif data.ndim > 4:
        raise InputImageError(name, f"image has {data.ndim} dimensions (shape {data.shape}); SynthSR needs 3-D")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputImageError(name, f"unsupported voxel type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InputImageError(name, f"image contains {bad} NaN or infinite voxel values")
    lo, hi = data.min(), data.max()
    if lo == hi:
        raise InputImageError(name, f"image is constant (every voxel is {lo}); nothing to synthesise from")
    affine = np.asarray(image.affine, dtype=np.float64)
    check_affine(affine, name)
    return InputVolume(data=data, affine=affine, header=image.header, source=name)


def check_affine(affine: np.ndarray, name: str) -> None:
    if not np.isfinite(affine).all():
        raise InputImageError(name, "affine (qform/sform) contains NaN or infinite values")
    sizes = voxel_sizes(affine)
    if np.any(sizes <= 0):
        raise InputImageError(name, f"zero voxel size in the affine (column norms {np.round(sizes, 6).tolist()})")
    det = abs(np.linalg.det(affine[:3, :3]))
    if det <= 1e-6 * float(np.prod(sizes)):
        raise InputImageError(name, "singular affine: voxel axes are not independent (check qform/sform)")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def save_atomic(image: nib.spatialimages.SpatialImage, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` to a temporary file beside ``path`` and rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = next((s for s in IMAGE_SUFFIXES if target.name.endswith(s)), target.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    try:
        nib.save(image, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
