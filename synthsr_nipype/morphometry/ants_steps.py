"""The ``ants`` backend's ANTs work, run inside a fresh worker process (see :mod:`.ants_backend`).

Imported only by the worker of :mod:`synthsr_nipype.isolation`, after
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` is set: ITK reads it once per process, and ANTs
registration is bit-reproducible only single-threaded with a fixed seed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ants
import h5py
import nibabel as nb
import numpy as np
from scipy import ndimage

from ..atomic import atomic_copy, atomic_write_nifti
from .brainmask import SKULL_STRIPPED_RATIO, ball, is_skull_stripped, rough_brain_mask
from .labels import ANTS_LABELS
from .templates import get_template
from .volumetry import label_volumes, probability_volumes

#: margin kept around the brain of a full head when it is cut out for the registration
ROUGH_MASK_MARGIN_MM = 3.0
#: the quick affines that decide skull or no skull and find the brain of a head (the rigid/affine
#: stages of the SyN registration then refine it)
HEAD_AFFINE_ITERATIONS = (200, 100, 50, 0)
# The metric mask around the template brain, so that skull and scalp of a full head (absent
# from the brain-extracted template) do not drive the registration, while the brain edge does.
METRIC_MASK_DILATION_MM = 6.0


def _seed(seed: int) -> None:
    ants.config.set_ants_deterministic(True, seed)


def _to_nifti(ref: nb.Nifti1Image, data: np.ndarray, dtype: Any) -> nb.Nifti1Image:
    """Array on the grid of ``ref`` (ANTs and nibabel index voxels in the same order)."""
    hdr = ref.header.copy()
    hdr.set_data_dtype(dtype)
    img = nb.Nifti1Image(np.asarray(data, dtype=dtype), ref.affine, hdr)
    img.header.set_slope_inter(1, 0)
    return img


def _dilate(mask: np.ndarray, mm: float, zooms: tuple[float, ...]) -> np.ndarray:
    return ndimage.binary_dilation(mask, structure=ball(mm, zooms))


def register(
    t1w: str, out_dir: str, *, template_resolution: int, seed: int, reg_iterations: list[int],
    skull_stripped: bool | None = None,
) -> dict[str, Any]:
    """Affine + SyN registration, template (fixed) ← subject (moving).

    Template is fixed so that the SyN warp lives on the template grid (what TBM needs) and the
    inverse composite brings priors and mask onto the subject grid. The template is
    brain-extracted, so a full head is cut to its brain (+3 mm) first, found by an affine of the
    synthetic template head (:func:`.templates.head_image`), which also starts the registration: with
    the scalp in, the affine stretches the template brain onto the whole head (TIV 2.5 L).

    ``skull_stripped=None``: an image is taken as skull-stripped only when both votes agree: no dark
    ring outside its intensity brain (:func:`.brainmask.is_skull_stripped`) and the template brain
    fits it better than the template head (``brain_fit`` > ``head_fit``, correlations inside the
    template brain after each affine).
    """
    _seed(seed)
    out = Path(out_dir)
    tpl = get_template(template_resolution)
    fixed = ants.image_read(str(tpl.t1w))
    tmask = nb.load(tpl.mask)
    metric_mask = _dilate(np.asarray(tmask.dataobj) > 0.5, METRIC_MASK_DILATION_MM, tmask.header.get_zooms()[:3])
    fixed_mask = ants.from_numpy(metric_mask.astype("float32"), origin=fixed.origin, spacing=fixed.spacing,
                                 direction=fixed.direction)
    moving = ants.image_read(t1w)
    ref = nb.load(t1w)
    data = np.asarray(ref.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in ref.header.get_zooms()[:3])
    vox = float(abs(np.linalg.det(ref.affine[:3, :3])))
    facts: dict[str, Any] = {}
    init = None
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        stripped = skull_stripped
        if stripped is not True:
            head = _affine(ants.image_read(str(tpl.head)), moving, tpl, Path(tmp) / "head_")
            facts.update(head_brain_volume=float(head["brain"].sum()) * vox, head_fit=head["fit"])
        if stripped is None:
            # two hypotheses, the one whose brain matches the template's interior better wins; a skull
            # ring left outside the intensity brain (is_skull_stripped) always means a head
            brain = _affine(fixed, moving, tpl, Path(tmp) / "brain_")
            rough = rough_brain_mask(data, zooms)
            facts.update(brain_fit=brain["fit"], rough_brain_volume=float(rough.sum()) * vox)
            stripped = bool(is_skull_stripped(data, rough) and brain["fit"] > head["fit"])
        if not stripped:
            keep = _dilate(head["brain"], ROUGH_MASK_MARGIN_MM, zooms)
            moving = ants.from_numpy(moving.numpy() * keep, origin=moving.origin, spacing=moving.spacing,
                                     direction=moving.direction)
            init = head["transform"]
        reg = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform="SyN",
            initial_transform=init,
            mask=fixed_mask,
            mask_all_stages=True,
            reg_iterations=tuple(reg_iterations),
            write_composite_transform=True,
            outprefix=str(Path(tmp) / "reg_"),
        )
        to_template = str(atomic_copy(reg["fwdtransforms"], out / "from-T1w_to-template_mode-image_xfm.h5"))
        from_template = str(atomic_copy(reg["invtransforms"], out / "from-template_to-T1w_mode-image_xfm.h5"))
    return {
        "to_template": to_template,
        "from_template": from_template,
        "affine_log_det": affine_log_det(to_template),
        "skull_stripped": bool(stripped),
        **facts,
    }


def _affine(fixed: ants.ANTsImage, moving: ants.ANTsImage, tpl: Any, prefix: Path) -> dict[str, Any]:
    """Affine of ``moving`` onto ``fixed`` (a template brain or head, centre-of-mass start).

    Returns the transform file, the template brain mask on the subject grid and ``fit``: the
    correlation of template and subject inside the template brain, which tells a brain-sized fit of
    the brain from one stretched over a head (or shrunk inside a stripped brain).
    """
    reg = ants.registration(fixed=fixed, moving=moving, type_of_transform="Affine",
                            aff_iterations=HEAD_AFFINE_ITERATIONS, outprefix=str(prefix))
    tmask = ants.image_read(str(tpl.mask))
    inside = ants.resample_image_to_target(tmask, fixed, interp_type="nearestNeighbor").numpy() > 0.5
    fit = float(np.corrcoef(fixed.numpy()[inside], reg["warpedmovout"].numpy()[inside])[0, 1])
    brain = ants.apply_transforms(fixed=moving, moving=tmask, transformlist=reg["invtransforms"],
                                  whichtoinvert=[True], interpolator="linear").numpy() > 0.5
    return {"transform": reg["fwdtransforms"][0], "brain": brain, "fit": fit}


def affine_log_det(composite_h5: str) -> float:
    """log |det| of the linear part of an ITK composite transform (product of its matrices)."""
    total = 0.0
    with h5py.File(composite_h5, "r") as f:
        for key in f["TransformGroup"]:
            grp = f["TransformGroup"][key]
            kind = grp["TransformType"][0].decode()
            if kind.startswith(("AffineTransform", "MatrixOffsetTransformBase")):
                matrix = np.asarray(grp["TransformParameters"][:9], dtype=float).reshape(3, 3)
                total += float(np.log(abs(np.linalg.det(matrix))))
    return total


def segment(
    t1w: str,
    from_template: str,
    out_dir: str,
    *,
    template_resolution: int,
    seed: int,
    skull_stripped: bool | None,
    mrf: float,
    iterations: int,
    prior_weight: float,
) -> dict[str, Any]:
    """Warp priors and mask onto the subject, then Atropos (CSF, GM, WM) inside the mask."""
    _seed(seed)
    out = Path(out_dir)
    tpl = get_template(template_resolution)
    ref = nb.load(t1w)
    subject = ants.image_read(t1w)
    zooms = tuple(float(z) for z in ref.header.get_zooms()[:3])
    vox = float(abs(np.linalg.det(ref.affine[:3, :3])))

    def warp(path: Path) -> np.ndarray:
        img = ants.apply_transforms(fixed=subject, moving=ants.image_read(str(path)),
                                    transformlist=[from_template], interpolator="linear")
        return np.clip(img.numpy(), 0.0, 1.0)

    warped_mask = warp(tpl.mask) > 0.5
    data = subject.numpy()
    foreground = data > 0
    ratio = float(foreground.sum()) / max(float(warped_mask.sum()), 1.0)
    stripped = bool(ratio < SKULL_STRIPPED_RATIO) if skull_stripped is None else bool(skull_stripped)
    if stripped:
        # the brain is what the user kept; the dilated template mask only drops stray islands
        mask = foreground & _dilate(warped_mask, METRIC_MASK_DILATION_MM, zooms)
        labels, n = ndimage.label(mask)
        if n > 1:
            mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        mask = ndimage.binary_fill_holes(mask)
    else:
        mask = warped_mask

    def like(arr: np.ndarray) -> ants.ANTsImage:
        return ants.from_numpy(np.asarray(arr, dtype="float32"), origin=subject.origin,
                               spacing=subject.spacing, direction=subject.direction)

    priors = [like(warp(p) * mask) for p in tpl.priors]
    result = ants.atropos(
        a=subject,
        x=like(mask),
        i=priors,
        m=f"[{mrf},{'x'.join(['1'] * 3)}]",
        c=f"[{iterations},0]",
        priorweight=prior_weight,
        r=0,  # --use-random-seed 0: Atropos' constant internal seed (its default is a random one)
    )
    dseg = result["segmentation"].numpy().astype(np.uint8) * mask
    posteriors = [np.asarray(p.numpy(), dtype=np.float32) * mask for p in result["probabilityimages"]]

    paths = {"dseg": str(atomic_write_nifti(out / "dseg.nii.gz", _to_nifti(ref, dseg, np.uint8)))}
    for name, post in zip((lab.abbreviation for lab in ANTS_LABELS), posteriors):
        paths[f"probseg_{name}"] = str(
            atomic_write_nifti(out / f"label-{name}_probseg.nii.gz", _to_nifti(ref, post, np.float32))
        )
    paths["brain_mask"] = str(
        atomic_write_nifti(out / "desc-brain_mask.nii.gz", _to_nifti(ref, mask.astype(np.uint8), np.uint8))
    )
    tissues = {lab.abbreviation: lab.index for lab in ANTS_LABELS}
    volumes = probability_volumes(dict(zip(tissues, posteriors)), tissues, mask, vox)
    return {
        **paths,
        "volumes": {name: vol for _, name, vol in volumes},
        "label_volumes": {name: vol for _, name, vol in label_volumes(dseg, vox, ANTS_LABELS)},
        "mask_volume": float(mask.sum()) * vox,
        "warped_mask_volume": float(warped_mask.sum()) * vox,
        "skull_stripped": stripped,
        "foreground_to_mask_ratio": ratio,
    }


def logjacobian(to_template: str, t1w: str, out_file: str, *, template_resolution: int) -> dict[str, Any]:
    """log det of the Jacobian of the template→subject mapping, affine part removed, on the template grid.

    > 0: the subject is locally larger than the template after global (affine) scaling.
    """
    tpl = get_template(template_resolution)
    fixed = ants.image_read(str(tpl.t1w))
    with tempfile.TemporaryDirectory(dir=Path(out_file).parent) as tmp:
        field = ants.apply_transforms(fixed=fixed, moving=ants.image_read(t1w), transformlist=[to_template],
                                      compose=str(Path(tmp) / "field_"))
        jac = ants.create_jacobian_determinant_image(fixed, field, do_log=True).numpy()
    log_det_affine = affine_log_det(to_template)
    jac = np.nan_to_num(jac - log_det_affine, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    ref = nb.load(tpl.t1w)
    atomic_write_nifti(out_file, _to_nifti(ref, jac, np.float32))
    mask = np.asarray(nb.load(tpl.mask).dataobj) > 0.5
    return {"logjacobian": out_file, "affine_log_det": log_det_affine, "mean_in_mask": float(jac[mask].mean())}
