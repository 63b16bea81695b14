"""DiReCT cortical thickness, run inside a fresh worker process (see :mod:`.thickness`).

Imported only by the worker of :mod:`synthsr_nipype.isolation`, after the ITK thread count is set.
"""

from __future__ import annotations

from typing import Any

import ants
import nibabel as nb
import numpy as np

from ..atomic import atomic_write_nifti
from .templates import get_template

#: DiReCT settings of antsCorticalThickness.sh (its defaults: 45 iterations, gradient step 0.025,
#: smoothing 1.5; thickness prior none)
DIRECT_ITERATIONS = 45
DIRECT_GRADIENT_STEP = 0.025
DIRECT_SMOOTHING = 1.5


def thickness(dseg: str, gm: str, wm: str, out_file: str, *, gm_label: int, wm_label: int,
              iterations: int = DIRECT_ITERATIONS) -> dict[str, Any]:
    """DiReCT (``ants.kelly_kapowski``) thickness in mm on the grid of ``dseg``; 0 outside the grey matter.

    Where DiReCT measures nothing (no cortex or no white matter in ``dseg``, or an all-zero map, which antspyx
    raises on), the map is all 0, as antsCorticalThickness.sh writes it, and ``unmeasured`` says why."""
    ref = nb.load(dseg)
    labels = np.asarray(ref.dataobj)
    missing = [f"no {name}" for name, label in (("cortex", gm_label), ("white matter", wm_label))
               if not np.any(labels == label)]
    data = np.zeros(labels.shape, dtype=np.float32)
    if not missing:
        # DiReCT reads the labels and the two posteriors; other labels (CSF, background) bound the cortex
        try:
            th = ants.kelly_kapowski(s=ants.image_read(dseg), g=ants.image_read(gm), w=ants.image_read(wm),
                                     its=iterations, r=DIRECT_GRADIENT_STEP, m=DIRECT_SMOOTHING, gm_label=gm_label,
                                     wm_label=wm_label)
        except RuntimeError as exc:  # antspyx's check of an all-zero output; anything else goes on up
            if "failed to compute thickness" not in str(exc):
                raise
            missing = ["an all-zero map from DiReCT"]
        else:
            data = np.asarray(th.numpy(), dtype=np.float32)
            data[labels != gm_label] = 0.0
    img = nb.Nifti1Image(data, ref.affine)
    img.header.set_xyzt_units("mm")
    atomic_write_nifti(out_file, img)
    return {"thickness": out_file, "unmeasured": "; ".join(missing) or None}


def hemispheres(from_template: str, reference: str, out_file: str, *, template_resolution: int) -> dict[str, Any]:
    """The template's hemispheres (1 left: x < 0 in MNI space, 2 right) on the subject grid."""
    tpl = get_template(template_resolution)
    mask = nb.load(tpl.mask)
    ijk = np.indices(mask.shape).reshape(3, -1)
    x = (mask.affine[:3, :3] @ ijk + mask.affine[:3, 3:])[0].reshape(mask.shape)
    inside = np.asarray(mask.dataobj) > 0.5
    labels = np.where(inside, np.where(x < 0, 1, 2), 0).astype(np.float32)
    _warp_labels(labels, str(tpl.mask), from_template, reference, out_file)
    return {"hemispheres": out_file}


def template_labels(from_template: str, reference: str, labels: str, out_file: str) -> dict[str, Any]:
    """A label image on a template grid (``labels``) moved onto the subject grid (nearest neighbour)."""
    img = nb.load(labels)
    _warp_labels(np.asarray(img.dataobj).astype(np.float32), labels, from_template, reference, out_file)
    return {"labels": out_file}


def _warp_labels(labels: np.ndarray, template_file: str, from_template: str, reference: str, out_file: str) -> None:
    fixed = ants.image_read(reference)
    moving = ants.image_read(template_file).new_image_like(labels)
    warped = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=[from_template],
                                   interpolator="nearestNeighbor").numpy()
    ref = nb.load(reference)
    dtype = np.uint8 if labels.max() < 256 else np.int16
    atomic_write_nifti(out_file, nb.Nifti1Image(np.rint(warped).astype(dtype), ref.affine))
