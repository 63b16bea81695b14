"""Side-by-side orthogonal views of an input scan and its SynthSR output (nilearn)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from nilearn import plotting  # noqa: E402

from ..atomic import atomic_target  # noqa: E402


def save_comparison(source: nib.spatialimages.SpatialImage, synthetic: nib.spatialimages.SpatialImage,
                    path: str | os.PathLike[str]) -> Path:
    """Write a PNG (or SVG, by extension) with the input above and the output below, same cut coordinates."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(2, 1, figsize=(10, 7), facecolor="black")
    centre = (np.array(source.shape[:3]) - 1) / 2.0
    cuts = tuple(source.affine[:3, :3] @ centre + source.affine[:3, 3])
    for ax, image, title in ((axes[0], source, "input"), (axes[1], synthetic, "SynthSR 1 mm")):
        # float32 up front: nilearn casts integer data itself, with a warning on every call
        as_float = nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine)
        plotting.plot_anat(as_float, cut_coords=cuts, axes=ax, title=title, draw_cross=False, dim=-0.5,
                           black_bg=True)
    try:
        with atomic_target(target) as tmp:
            figure.savefig(tmp, dpi=90, facecolor="black")
    finally:
        plt.close(figure)
    return target
