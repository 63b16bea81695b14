"""The bundled MNI152NLin2009aSym template (T1, tissue priors, brain mask) taken from nilearn.

nilearn ships the ICBM 2009a symmetric T1 (brain-extracted) and its GM/WM probability maps inside
the package, so nothing is downloaded. They are written once as float32 NIfTI files into a cache
folder so that ANTs (which reads files) and Nipype (which hashes files) can use them.

No head (skull and scalp) template ships with nilearn, and a brain-only template registered to a
head stretches over the scalp. :func:`head_image` adds a skull and a scalp shell of typical adult
thickness around the template brain (``desc-head_T1w``): crude, but it gives the affine the edge a
skull-on head really has, the head/air boundary, at about the right distance from the brain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

from ..atomic import atomic_write_nifti
from . import TEMPLATE_SPACE

#: shells around the template brain mask (which already holds the extracerebral CSF): skull, then
#: scalp, adult averages; their intensities as fractions of the template's white matter (skull dark
#: on a T1w; the scalp about grey-matter bright, as on SynthSR outputs)
HEAD_SKULL_MM, HEAD_SCALP_MM = 6.0, 6.0
HEAD_SKULL_LEVEL, HEAD_SCALP_LEVEL = 0.25, 0.65

#: the project's cache variable (also used for converted weights): templates go in a subfolder
CACHE_ENV = "SYNTHSR_CACHE_DIR"


@dataclass(frozen=True)
class TemplateFiles:
    """Paths of the template images at one resolution."""

    space: str
    resolution: int
    t1w: Path
    mask: Path
    head: Path
    csf: Path
    gm: Path
    wm: Path

    @property
    def priors(self) -> tuple[Path, Path, Path]:
        """Tissue priors in the order of the segmentation labels (CSF, GM, WM)."""
        return (self.csf, self.gm, self.wm)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "templates"
    import platformdirs

    return Path(platformdirs.user_cache_dir("synthsr-nipype")) / "templates"


def _nilearn_images(resolution: int) -> dict[str, nb.Nifti1Image]:
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=resolution)
    mask = datasets.load_mni152_brain_mask(resolution=resolution)
    gm = datasets.load_mni152_gm_template(resolution=resolution)
    wm = datasets.load_mni152_wm_template(resolution=resolution)
    m = np.asarray(mask.dataobj, dtype=np.float32) > 0.5
    g = np.asarray(gm.get_fdata(), dtype=np.float32)
    w = np.asarray(wm.get_fdata(), dtype=np.float32)
    # nilearn has no CSF map: inside the brain mask, CSF is what GM and WM leave over
    c = np.clip(1.0 - g - w, 0.0, 1.0) * m
    head, head_affine = head_image(np.asarray(t1.get_fdata(), np.float32), m, t1.affine)
    out = {}
    for key, data, affine in (
        ("desc-head_T1w", head, head_affine),
        ("T1w", t1.get_fdata(), t1.affine),
        ("mask", m, t1.affine),
        ("label-CSF_probseg", c, t1.affine),
        ("label-GM_probseg", g * m, t1.affine),
        ("label-WM_probseg", w * m, t1.affine),
    ):
        img = nb.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
        img.header.set_xyzt_units("mm")
        img.header.set_qform(affine, 4)  # code 4 = MNI152 space
        img.header.set_sform(affine, 4)
        out[key] = img
    return out


def head_image(t1: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The template brain inside a skull and a scalp shell, on a grid padded to hold them (array, affine)."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    pad = [int(np.ceil((HEAD_SKULL_MM + HEAD_SCALP_MM + 4.0) / z)) for z in zooms]
    t1 = np.pad(t1 * mask, [(p, p) for p in pad])
    mask = np.pad(mask, [(p, p) for p in pad])
    dist = ndimage.distance_transform_edt(~mask, sampling=zooms)
    wm = float(np.percentile(t1[mask], 90))
    head = t1.copy()
    head[(dist > 0) & (dist <= HEAD_SKULL_MM)] = HEAD_SKULL_LEVEL * wm
    head[(dist > HEAD_SKULL_MM) & (dist <= HEAD_SKULL_MM + HEAD_SCALP_MM)] = HEAD_SCALP_LEVEL * wm
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ -np.asarray(pad, float) + affine[:3, 3]
    return head, shifted


def get_template(resolution: int = 1, root: Path | None = None) -> TemplateFiles:
    """Return (creating once) the template files at ``resolution`` mm (1 or 2)."""
    if resolution not in (1, 2):
        raise ValueError(f"template resolution must be 1 or 2 mm, not {resolution!r}")
    folder = (root or cache_dir()) / f"tpl-{TEMPLATE_SPACE}"
    names = {
        "T1w": f"tpl-{TEMPLATE_SPACE}_res-{resolution}_T1w.nii.gz",
        "mask": f"tpl-{TEMPLATE_SPACE}_res-{resolution}_desc-brain_mask.nii.gz",
        "desc-head_T1w": f"tpl-{TEMPLATE_SPACE}_res-{resolution}_desc-head_T1w.nii.gz",
        "label-CSF_probseg": f"tpl-{TEMPLATE_SPACE}_res-{resolution}_label-CSF_probseg.nii.gz",
        "label-GM_probseg": f"tpl-{TEMPLATE_SPACE}_res-{resolution}_label-GM_probseg.nii.gz",
        "label-WM_probseg": f"tpl-{TEMPLATE_SPACE}_res-{resolution}_label-WM_probseg.nii.gz",
    }
    paths = {k: folder / v for k, v in names.items()}
    if not all(p.exists() for p in paths.values()):
        for key, img in _nilearn_images(resolution).items():
            atomic_write_nifti(paths[key], img)
    return TemplateFiles(
        space=TEMPLATE_SPACE,
        resolution=resolution,
        t1w=paths["T1w"],
        mask=paths["mask"],
        head=paths["desc-head_T1w"],
        csf=paths["label-CSF_probseg"],
        gm=paths["label-GM_probseg"],
        wm=paths["label-WM_probseg"],
    )
