"""mri_synthseg's ``preprocess``: read, resample to 1 mm, align to RAS, crop, normalise, pad.

Quirks kept (fixture README section 3): data read with ``get_fdata`` (float64, scaling applied); a last axis
of at most 10 entries is channels (averaged; a 3-D volume with so few slices is refused as 2-D); the voxel size
deciding the resampling is the header's pixdim (float32), while the resampling itself uses the affine's
column norms; percentiles over every voxel of the (cropped) unpadded volume.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from ..errors import InputImageError
from ..inference.checks import HeaderWarning
from ..inference.geometry import align_to_ref, resample_to_1mm
from ..model.spec import PAD_MULTIPLE

MAX_CHANNELS = 10
DEFAULT_MIN_PAD = 128


@dataclass
class Prepared:
    """The network input and what the post-processing and the writers need."""

    image: np.ndarray  # (X, Y, Z) float64, normalised, padded, RAS-aligned
    affine: np.ndarray  # the input's affine, or the 1 mm one after resampling
    header: nib.Nifti1Header  # the input's header (the outputs reuse it)
    im_res: np.ndarray  # voxel size used for volumes: pixdim (float32) or [1, 1, 1]
    shape: tuple[int, int, int]  # aligned shape before cropping
    pad_idx: tuple[int, ...]  # (lo x3, hi x3) of the unpadded volume in the padded grid
    crop_idx: tuple[int, ...] | None  # (lo x3, hi x3) of the crop in the aligned volume
    resampled: nib.Nifti1Image | None  # the 1 mm image (input voxel order) when resampling happened
    source: str
    input_affine: np.ndarray | None = None  # the input's own affine and grid (``keep_geometry``)
    input_shape: tuple[int, int, int] | None = None


def ceil_to(value: int, multiple: int = PAD_MULTIPLE) -> int:
    return int(math.ceil(value / multiple) * multiple)


def read_image(image: "nib.spatialimages.SpatialImage | str | os.PathLike[str]"
               ) -> tuple[np.ndarray, nib.Nifti1Image, str]:
    name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else (image.get_filename() or "<in-memory image>")
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise InputImageError(name, "file does not exist")
        try:
            image = nib.load(image)
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for non-images
            raise InputImageError(name, f"not a readable NIfTI/MGH image ({_short(exc)})") from None
    try:
        data = np.squeeze(image.get_fdata())
    except Exception as exc:  # noqa: BLE001 - truncated/corrupted data: zlib, EOF, OSError, ValueError
        raise InputImageError(name, f"image data cannot be read, file truncated or corrupted ({_short(exc)})") from None
    return data, image, name


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _volume(data: np.ndarray, name: str) -> np.ndarray:
    """The reference's dimension rule: a last axis of <= 10 entries is channels, which are averaged."""
    n_dims = data.ndim - 1 if data.shape[-1] <= MAX_CHANNELS else data.ndim
    if n_dims != 3:
        reason = " (a last axis of at most 10 entries is taken as channels)" if n_dims == 2 else ""
        raise InputImageError(name, f"input should have 3 dimensions, had {n_dims}{reason}; shape {data.shape}")
    if data.ndim == 4:
        warnings.warn(HeaderWarning(name, f"{data.shape[-1]} channels on the last axis: their average is "
                                          "segmented (as mri_synthseg)"), stacklevel=3)
        data = np.mean(data, axis=-1)
    if not np.all(np.isfinite(data)):
        raise InputImageError(name, "image holds NaN or infinite values")
    return data


def align(volume: np.ndarray, affine: np.ndarray, affine_ref: np.ndarray) -> np.ndarray:
    """``align_volume_to_ref`` on the three leading axes (numpy in, numpy out)."""
    out, _ = align_to_ref(torch.from_numpy(np.ascontiguousarray(volume)), affine, affine_ref)
    return out.numpy()


def rescale(im: np.ndarray) -> np.ndarray:
    """``rescale_volume(im, 0, 1, 0.5, 99.5)``: robust min/max from the percentiles, clip, map to [0, 1]."""
    lo, hi = np.percentile(im, [0.5, 99.5])
    im = np.clip(im, lo, hi)
    if hi == lo:
        return np.zeros_like(im)
    return (im - lo) / (hi - lo)


def centre_crop(im: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    lo = [max(int((n - c) / 2), 0) for n, c in zip(im.shape, sizes)]
    hi = [min(a + c, n) for a, c, n in zip(lo, sizes, im.shape)]
    return im[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], (*lo, *hi)


def auto_crop(im: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Box of the voxels above 0 (after normalisation) plus one voxel, grown to multiples of 32."""
    where = np.argwhere(im > 0)
    mins, maxs = where.min(axis=0), where.max(axis=0)
    extent = maxs - mins + 2
    sizes = [ceil_to(int(s)) for s in extent]
    lo = np.maximum(mins - np.floor_divide([c - e for c, e in zip(sizes, extent)], 2), 0)
    hi = np.minimum(lo + sizes, im.shape)
    return im[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], (*map(int, lo), *map(int, hi))


def pad(im: np.ndarray, min_pad: list[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    target = [max(ceil_to(n), ceil_to(m)) for n, m in zip(im.shape, min_pad)]
    lo = [(t - n) // 2 for t, n in zip(target, im.shape)]
    out = np.zeros(target, dtype=im.dtype)
    out[lo[0]:lo[0] + im.shape[0], lo[1]:lo[1] + im.shape[1], lo[2]:lo[2] + im.shape[2]] = im
    return out, (*lo, *(a + n for a, n in zip(lo, im.shape)))


def preprocess(image: "nib.spatialimages.SpatialImage | str | os.PathLike[str]", *, ct: bool = False,
               crop: list[int] | None = None, autocrop: bool = False) -> Prepared:
    """Everything before the networks, as mri_synthseg does it."""
    data, img, name = read_image(image)
    im = _volume(data, name)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputImageError(name, "the header's affine is singular or not finite; the image cannot be placed")
    header = img.header
    pixdim = header["pixdim"][1:4] if "pixdim" in header else header.get_zooms()[:3]
    im_res = np.asarray(pixdim, dtype=np.float32)
    resampled = None
    if np.any((im_res > 1.05) | (im_res < 0.95)):
        im_res = np.array([1.0, 1.0, 1.0])
        out, affine = resample_to_1mm(torch.from_numpy(im), affine)
        im = out.numpy()
        resampled = nib.Nifti1Image(im, affine, img.header)
    im = align(im, affine, np.eye(4))
    shape = tuple(int(s) for s in im.shape)
    crop_idx = None
    min_pad = [DEFAULT_MIN_PAD] * 3
    if crop is not None:
        sizes = list(crop) * 3 if len(crop) == 1 else list(crop)
        if len(sizes) != 3 or min(sizes) <= 0:
            raise InputImageError(name, f"--crop takes 1 or 3 positive sizes, got {crop}")
        im, crop_idx = centre_crop(im, [ceil_to(s) for s in sizes])
        min_pad = sizes
    if ct:
        im = np.clip(im, 0, 80)
    im = rescale(im)
    if autocrop and crop_idx is None:
        if not np.any(im > 0):
            raise InputImageError(name, "--autocrop: the image has no voxel above its minimum")
        im, crop_idx = auto_crop(im)
    im, pad_idx = pad(im, min_pad)
    return Prepared(image=im, affine=affine, header=img.header, im_res=im_res, shape=shape, pad_idx=pad_idx,
                    crop_idx=crop_idx, resampled=resampled, source=name,
                    input_affine=np.asarray(img.affine, dtype=np.float64),
                    input_shape=tuple(int(n) for n in data.shape[:3]))


def resample_like_input(labels: np.ndarray, affine: np.ndarray, target_affine: np.ndarray,
                        target_shape: tuple[int, int, int]) -> np.ndarray:
    """``--keepgeom``: a label map moved onto the input's grid by nearest neighbour, as mri_synthseg does it
    (surfa's ``resample_like(..., method='nearest')``): each target voxel maps through
    ``inv(affine) @ target_affine`` (float32, as surfa) to a source position; outside ``[0, n)`` on any axis
    it is 0, else the position is rounded half away from zero (C ``round``) and clipped to ``n - 1``.
    One target slice at a time (bounded memory).
    """
    vox = (np.linalg.inv(np.asarray(affine, np.float64)) @ np.asarray(target_affine, np.float64)).astype(np.float32)
    limits = np.asarray(labels.shape[:3])
    ii, jj = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in target_shape[:2]), indexing="ij")
    out = np.zeros(tuple(target_shape), dtype=labels.dtype)
    for k in range(target_shape[2]):
        points = np.stack([ii, jj, np.full_like(ii, k)], axis=-1)
        src = points @ vox[:3, :3].T + vox[:3, 3]  # float32
        inside = np.all((src >= 0) & (src < limits.astype(np.float32)), axis=-1)
        idx = np.minimum(np.floor(src.astype(np.float64) + 0.5).astype(np.int64), limits - 1)  # src >= 0 inside
        idx[~inside] = 0
        out[..., k] = np.where(inside, labels[idx[..., 0], idx[..., 1], idx[..., 2]], 0)
    return out
