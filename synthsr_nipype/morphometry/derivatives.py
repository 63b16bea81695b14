"""BIDS-derivative names and JSON sidecar content of the morphometry outputs (written by the
one derivatives sink, :class:`~synthsr_nipype.interfaces.derivatives.DerivativesSink`).

Names (in ``sub-<s>/[ses-<t>/]anat/``, ``<group>`` = ``sub-<s>[_ses-<t>]``)::

    <group>_seg-<backend>_dseg.nii.gz  (+ .tsv look-up table, + .json)
    <group>_seg-<backend>_label-{CSF,GM,WM}_probseg.nii.gz       (ants, synthseg)
    <group>_seg-<backend>_desc-brain_mask.nii.gz                 (ants)
    <group>_seg-<backend>_desc-volume_morph.tsv  (+ .json)       community suffix
    <group>_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5     (ants / --tbm)
    <group>_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.h5
    <group>_space-MNI152NLin2009aSym_desc-logjacobian_map.nii.gz (--tbm)
    <group>_seg-<backend>_desc-thickness_map.nii.gz              (--thickness)
    <group>_seg-<backend>_desc-thickness_morph.tsv  (+ .json)    (--thickness)

``<backend>`` is the backend's alphanumeric label: ``ants``, ``synthseg``, ``synthsegfs``, ``samseg``, ``reconall``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from . import TEMPLATE_SPACE

#: the tissue classes of the ``ants`` backend's posteriors, in the order of its ``probsegs``
TISSUES = ("CSF", "GM", "WM")

MORPH_COLUMNS_META = {
    "index": {"Description": "Label value in the _dseg image; n/a for derived totals (TIV)"},
    "name": {"Description": "Structure name (see the _dseg.tsv look-up table)"},
    "volume-mm3": {"Description": "Volume of the structure", "Units": "mm^3"},
    "mean-reliability": {"Description": "Mean reliability (0-1) of the structure's voxels in the fused image's "
                                        "reliability map (docs/qc.md); for TIV, of the whole segmentation. A "
                                        "structure no slice covered can be filtered on it"},
}


def seg_label(backend: str) -> str:
    """The ``seg-<label>`` of a backend: BIDS labels are alphanumeric (``recon-all`` → ``reconall``)."""
    return "".join(c for c in backend if c.isalnum())


def backend_from_label(label: str) -> str:
    """Inverse of :func:`seg_label` for the known backends (unknown labels come back as they are)."""
    from . import BACKENDS

    return next((b for b in BACKENDS if seg_label(b) == label), label)


def output_entities(backend: str) -> dict[str, tuple[dict[str, str], str]]:
    """BIDS entities (besides subject and session) and extension of every morphometry output,
    keyed like the workflow's outputnode fields; pybids' patterns make the names."""
    seg = {"segmentation": seg_label(backend)}
    outputs = {
        "dseg": ({**seg, "suffix": "dseg"}, ".nii.gz"),
        "dseg_tsv": ({**seg, "suffix": "dseg"}, ".tsv"),
        "brain_mask": ({**seg, "desc": "brain", "suffix": "mask"}, ".nii.gz"),
        "morph_tsv": ({**seg, "desc": "volume", "suffix": "morph"}, ".tsv"),
        "to_template_xfm": (
            {"from": "T1w", "to": TEMPLATE_SPACE, "mode": "image", "suffix": "xfm"}, ".h5"),
        "from_template_xfm": (
            {"from": TEMPLATE_SPACE, "to": "T1w", "mode": "image", "suffix": "xfm"}, ".h5"),
        "logjacobian": (
            {"space": TEMPLATE_SPACE, "desc": "logjacobian", "suffix": "map"}, ".nii.gz"),
        "thickness": ({**seg, "desc": "thickness", "suffix": "map"}, ".nii.gz"),
        "thickness_tsv": ({**seg, "desc": "thickness", "suffix": "morph"}, ".tsv"),
    }
    for tissue in TISSUES:
        outputs[f"probseg_{tissue}"] = ({**seg, "label": tissue, "suffix": "probseg"}, ".nii.gz")
    return outputs


def derivative_names(subject: str, session: str | None, backend: str) -> dict[str, str]:
    """File names of every morphometry output, keyed like the workflow's outputnode fields."""
    from ..bids.derivatives import build_derivative_relpath

    group = {"subject": subject[4:] if subject.startswith("sub-") else subject}
    if session:
        group["session"] = session[4:] if session.startswith("ses-") else session
    return {
        field: Path(build_derivative_relpath({**group, **entities}, extension=extension)).name
        for field, (entities, extension) in output_entities(backend).items()
    }


def sidecar_metadata(field: str, backend: str | None = None) -> dict[str, Any] | None:
    """What the sidecar of an output (of ``backend``'s run) says besides the backend's provenance and Sources;
    ``None``: no sidecar of its own (the look-up table is described by the dseg sidecar)."""
    if field == "dseg_tsv":
        return None
    if field.startswith("probseg_") and backend == "synthseg":
        from .labels import tissue_labels

        tissue = field.split("_", 1)[1]
        return {"Description": f"Probability of {tissue}: the sum of SynthSeg's posteriors of the labels the "
                               f"_dseg.tsv maps to {tissue} (FreeSurfer labels "
                               f"{', '.join(str(i) for i in tissue_labels()[tissue])}; parcels are cortex, 3/42)"}
    if field == "morph_tsv":
        return dict(MORPH_COLUMNS_META)
    if field == "thickness_tsv":
        return {
            "index": {"Description": "Region label value; n/a for the whole cortex"},
            "name": {"Description": "Region (FreeSurfer name)"},
            "thickness-mm": {"Description": "Mean DiReCT cortical thickness over the region's measured "
                             "grey-matter voxels", "Units": "mm"},
            "volume-mm3": {"Description": "Volume of the measured grey-matter voxels", "Units": "mm^3"},
        }
    if field == "thickness":
        return {"Description": "DiReCT (ANTs kelly_kapowski) cortical thickness; 0 outside the grey matter",
                "Units": "mm"}
    if field == "logjacobian":
        return {
            "Description": "log det Jacobian of the T1w-to-template SyN warp, affine part removed "
            "(> 0: the subject is locally larger than the template)",
            "SpatialReference": TEMPLATE_SPACE,
        }
    if field.endswith("_xfm"):
        return {"Type": "ITK composite (affine + SyN displacement field)", "Software": "ANTs (antspyx)"}
    return {}


def sidecar_name(name: str) -> str:
    for ext in (".nii.gz", ".tsv", ".h5"):
        if name.endswith(ext):
            return name[: -len(ext)] + ".json"
    raise ValueError(name)


def bidsignore_patterns() -> list[str]:
    text = resources.files("synthsr_nipype.morphometry").joinpath("data/bidsignore.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
