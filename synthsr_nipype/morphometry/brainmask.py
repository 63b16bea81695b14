"""A rough brain mask of a full head, from intensities only (no template needed).

It is one of the two votes on "skull-stripped or not" (:func:`is_skull_stripped`): where a dark
skull/CSF ring cuts the brain from the scalp (real T1w, FLAIR), a head has much more non-zero
volume than this brain. On SynthSR outputs of skull-on scans the scalp comes out about as bright
as grey matter and the ring is gone, so this mask leaks into the scalp and the ratio says
"stripped": the other vote, the template fit in ``ants_steps.register`` (template head against
template brain), decides those, and the brain of a head comes from the template head, not from here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: non-zero volume / rough-brain volume below which the image is taken as skull-stripped
#: (skull-stripped hires-t1: ~1.1; heads: ~2)
SKULL_STRIPPED_RATIO = 1.35


def ball(radius_mm: float, zooms: tuple[float, ...]) -> np.ndarray:
    """Ellipsoidal structuring element of ``radius_mm`` in every direction, whatever the voxel size."""
    rad = [max(1, int(round(radius_mm / z))) for z in zooms]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in rad)]
    return sum((g / r) ** 2 for g, r in zip(grid, rad)) <= 1.0


def otsu3(values: np.ndarray, bins: int = 128) -> tuple[float, float]:
    """Two thresholds of a 3-class Otsu split (dark | tissue | bright) by exhaustive search."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    p = hist / hist.sum()
    cum_p, cum_s = np.cumsum(p), np.cumsum(p * centres)
    best, t = -1.0, (edges[1], edges[2])
    for i in range(1, bins - 1):
        w0, s0 = cum_p[i - 1], cum_s[i - 1]
        j = np.arange(i + 1, bins)
        w1, s1 = cum_p[j - 1] - w0, cum_s[j - 1] - s0
        w2, s2 = 1.0 - cum_p[j - 1], cum_s[-1] - cum_s[j - 1]
        ok = (w0 > 0) & (w1 > 0) & (w2 > 0)
        if not ok.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            var = s0**2 / w0 + np.where(ok, s1**2 / w1 + s2**2 / w2, -np.inf)
        k = int(np.argmax(var))
        if var[k] > best:
            best, t = float(var[k]), (float(edges[i]), float(edges[j[k]]))
    return t


def rough_brain_mask(data: np.ndarray, zooms: tuple[float, ...], erode_mm: float = 3.0) -> np.ndarray:
    """Largest connected "tissue" component after an erosion that cuts the brain from the scalp."""
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(data.shape, dtype=bool)
    # clip the few very bright voxels (fat, vessels) that would stretch the histogram
    d = np.clip(data, 0, np.percentile(positive, 99.5))
    low, _ = otsu3(d[d > 0])
    tissue = d > low
    core = ndimage.binary_erosion(tissue, ball(erode_mm, zooms))
    labels, n = ndimage.label(core)
    if n == 0:
        return np.zeros(data.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    brain = ndimage.binary_dilation(labels == int(np.argmax(sizes)), ball(erode_mm + 1, zooms)) & tissue
    brain = ndimage.binary_closing(brain, ball(5.0, zooms))
    return ndimage.binary_fill_holes(brain)


def is_skull_stripped(data: np.ndarray, brain: np.ndarray) -> bool:
    """A skull-stripped image has (almost) nothing non-zero outside its brain."""
    return float((data > 0).sum()) / max(float(brain.sum()), 1.0) < SKULL_STRIPPED_RATIO
