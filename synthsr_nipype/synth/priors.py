"""Fit the generator's per-class intensity priors from real images and their label maps.

As SynthSR's ``build_intensity_stats``: in each image, each intensity class gets a robust mean (median) and std
(1.4826 x MAD) of its strictly positive voxels; across images, row 0 of a 2 x K table is the mean and row 1 the
std of those per-image values (``prior_means_<contrast>.npy`` from the means, ``prior_stds_<contrast>.npy`` from
the stds).  Images are first rescaled to 0-255 between their 0.025th and 99.975th percentiles, so that tables
from scanners with different units agree.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from ..atomic import atomic_write_bytes
from .labels import ClassTable

MAD_TO_STD = 1.4826
RESCALE_PERCENTILES = (0.025, 99.975)


def class_statistics(image: np.ndarray, labels: np.ndarray, table: ClassTable,
                     rescale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per intensity class of one image: (robust means, robust stds); NaN for classes absent from it."""
    values = image.astype(np.float64)
    if rescale:
        low, high = np.percentile(values, RESCALE_PERCENTILES)
        if high <= low:
            raise ValueError("image is constant; no intensity statistics")
        values = np.clip((values - low) / (high - low), 0, 1) * 255.0
    lut = table.lookup(int(labels.max())).numpy()
    classes = lut[labels.astype(np.int64)]
    means = np.full(table.n_classes, np.nan)
    stds = np.full(table.n_classes, np.nan)
    for k in range(table.n_classes):
        inside = values[(classes == k) & (values > 0)]
        if inside.size:
            means[k] = np.median(inside)
            stds[k] = MAD_TO_STD * np.median(np.abs(inside - means[k]))
    background = table.classes[table.labels.index(0)] if 0 in table.labels else None
    if background is not None:  # the background class keeps the generator's "black" default
        means[background] = stds[background] = 0.0
    return means, stds


def estimate_priors(images: Sequence[str | os.PathLike[str]], label_maps: Sequence[str | os.PathLike[str]],
                    table: ClassTable, rescale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """2 x K prior tables (means, stds) from image / label-map pairs (labels resampled to the image if needed)."""
    if len(images) != len(label_maps) or not images:
        raise ValueError(f"give one label map per image ({len(images)} images, {len(label_maps)} label maps)")
    per_image = []
    for image_path, label_path in zip(images, label_maps):
        image = nib.load(str(image_path))
        labels = nib.load(str(label_path))
        if image.shape[:3] != labels.shape[:3] or not np.allclose(image.affine, labels.affine, atol=1e-3):
            labels = resample_from_to(labels, (image.shape[:3], image.affine), order=0)
        data = np.asarray(image.dataobj)
        if data.ndim != 3:
            raise ValueError(f"{image_path}: image must be 3-D, got shape {data.shape}")
        per_image.append(class_statistics(data, np.rint(np.asarray(labels.dataobj)), table, rescale))
    means = np.stack([m for m, _ in per_image])
    stds = np.stack([s for _, s in per_image])
    missing = [k for k in range(table.n_classes) if np.all(np.isnan(means[:, k]))]
    if missing:
        raise ValueError(f"no voxel of intensity class(es) {missing} in any image; check the label maps")
    return _table(means), _table(stds)


def _table(values: np.ndarray) -> np.ndarray:
    """Rows: mean and std (over images) of each class's per-image value; one image gives a std of 0."""
    return np.stack([np.nanmean(values, axis=0), np.nan_to_num(np.nanstd(values, axis=0))])


def write_priors(folder: str | os.PathLike[str], contrast: str, means: np.ndarray, stds: np.ndarray) -> list[Path]:
    """``prior_means_<contrast>.npy`` and ``prior_stds_<contrast>.npy`` in ``folder`` (written atomically)."""
    written = []
    for name, table in (("means", means), ("stds", stds)):
        buffer = io.BytesIO()
        np.save(buffer, table)
        written.append(atomic_write_bytes(Path(folder) / f"prior_{name}_{contrast}.npy", buffer.getvalue()))
    return written
