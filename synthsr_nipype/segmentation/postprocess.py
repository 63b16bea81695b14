"""mri_synthseg's ``postprocess``: connected components, hard labels, parcellation, soft volumes.

Kept as the reference does it (fixture README 3.7 and 3.9): float32 posteriors; the whole-brain and per-class
largest components on the *padded* grid unless ``fast``; a voxel whose posteriors all vanish becomes NaN (and
every volume NaN); the parcel volumes scaled by the volume at ``index(label 3/42) - 1``, which for 2.0 (whose
volumes start with the total) is cerebral white matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import label as connected_components

from .preprocess import Prepared, align
from .tables import CORTEX_LABELS, Tables


@dataclass
class Post:
    seg: np.ndarray  # int32, input voxel order
    posteriors: np.ndarray  # (X, Y, Z, n_labels), input voxel order
    volumes: np.ndarray  # in volume_names order, rounded to 1e-3 mm^3


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component (ties: the first in C order); the mask itself if it is empty."""
    components, n = connected_components(mask)
    if n == 0:
        return mask.copy()
    return components == np.argmax(np.bincount(components.ravel())[1:]) + 1


def _crop(x: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    return x[idx[0]:idx[3], idx[1]:idx[4], idx[2]:idx[5]]


def postprocess(post: np.ndarray, parc: np.ndarray | None, prep: Prepared, tables: Tables, *,
                fast: bool) -> Post:
    """``post``/``parc``: network outputs on the padded grid, (X, Y, Z, K) float32."""
    post = np.array(post, dtype=np.float32, copy=True)
    if fast:
        post = _crop(post, prep.pad_idx)
    brain = largest_component(np.sum(post[..., 1:], axis=-1) > 0.25)
    post[..., 1:] *= brain[..., None]
    if not fast:
        mask = post > 0.25
        for cls in np.unique(tables.topology)[1:]:
            channels = np.where(tables.topology == cls)[0]
            keep = largest_component(np.any(mask[..., channels], axis=-1))
            for c in channels:
                post[..., c] *= keep
        post = _crop(post, prep.pad_idx)
    else:
        post[..., 1:] *= post[..., 1:] > 0.2
    with np.errstate(invalid="ignore", divide="ignore"):
        post /= np.sum(post, axis=-1)[..., None]
    seg = tables.labels[post.argmax(-1).astype(np.int32)].astype(np.int32)

    if parc is not None:
        parc = np.array(_crop(parc, prep.pad_idx), dtype=np.float32, copy=True)
        cortex = np.isin(seg, CORTEX_LABELS)
        parc[..., 0] = np.where(cortex, 0.0, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            parc /= np.sum(parc, axis=-1)[..., None]
        parcels = tables.parc_labels[parc.argmax(-1).astype(np.int32)].astype(np.int32)
        seg[cortex] = parcels[cortex]

    if prep.crop_idx is not None:  # paste into the aligned volume; background posterior 1 around the patch
        c = prep.crop_idx
        full = np.zeros(prep.shape, dtype=np.int32)
        full[c[0]:c[3], c[1]:c[4], c[2]:c[5]] = seg
        full_post = np.zeros((*prep.shape, post.shape[-1]))
        full_post[..., 0] = 1.0
        full_post[c[0]:c[3], c[1]:c[4], c[2]:c[5]] = post
        seg, post = full, full_post

    seg = align(seg, np.eye(4), prep.affine)
    post = align(post, np.eye(4), prep.affine)

    volumes = np.sum(post[..., 1:], axis=(0, 1, 2))
    if not tables.v1:
        volumes = np.concatenate([np.array([np.sum(volumes)], dtype=volumes.dtype), volumes])
    if parc is not None:
        parc_volumes = np.sum(parc[..., 1:], axis=(0, 1, 2))
        cortex_idx = np.where(np.isin(tables.labels, CORTEX_LABELS))[0] - 1
        parc_volumes = parc_volumes / np.sum(parc_volumes) * np.sum(volumes[cortex_idx])
        volumes = np.concatenate([volumes, parc_volumes.astype(volumes.dtype)])
    # numpy 1.x value-based casting (the reference's): a float32 sum times a float64 voxel volume stays float32
    voxel = np.prod(prep.im_res).astype(volumes.dtype)
    volumes = np.around(volumes * voxel, 3)
    return Post(seg=seg, posteriors=post, volumes=volumes)
