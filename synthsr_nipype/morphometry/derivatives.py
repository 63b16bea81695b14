"""BIDS-derivative names and JSON sidecars of the morphometry outputs, and their atomic writing.

Names (in ``sub-<s>/[ses-<t>/]anat/``, ``<group>`` = ``sub-<s>[_ses-<t>]``)::

    <group>_seg-<backend>_dseg.nii.gz  (+ .tsv look-up table, + .json)
    <group>_seg-<backend>_label-{CSF,GM,WM}_probseg.nii.gz       (ants)
    <group>_seg-<backend>_desc-brain_mask.nii.gz                 (ants)
    <group>_seg-<backend>_desc-volume_morph.tsv  (+ .json)       community suffix
    <group>_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5     (ants / --tbm)
    <group>_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.h5
    <group>_space-MNI152NLin2009aSym_desc-logjacobian_map.nii.gz (--tbm)

``<backend>`` is the backend's alphanumeric label: ``ants``, ``synthseg``, ``samseg``, ``reconall``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..atomic import atomic_copy, atomic_write_json
from . import TEMPLATE_SPACE

MORPH_COLUMNS_META = {
    "index": {"Description": "Label value in the _dseg image; n/a for derived totals (TIV)"},
    "name": {"Description": "Structure name (see the _dseg.tsv look-up table)"},
    "volume-mm3": {"Description": "Volume of the structure", "Units": "mm^3"},
}


def group_prefix(subject: str, session: str | None = None) -> str:
    subject = subject[4:] if subject.startswith("sub-") else subject
    if session:
        session = session[4:] if session.startswith("ses-") else session
        return f"sub-{subject}_ses-{session}"
    return f"sub-{subject}"


def anat_dir(output_dir: str | os.PathLike, subject: str, session: str | None = None) -> Path:
    parts = group_prefix(subject, session).split("_")
    return Path(output_dir, *parts, "anat")


def seg_label(backend: str) -> str:
    """The ``seg-<label>`` of a backend: BIDS labels are alphanumeric (``recon-all`` → ``reconall``)."""
    return "".join(c for c in backend if c.isalnum())


def backend_from_label(label: str) -> str:
    """Inverse of :func:`seg_label` for the known backends (unknown labels come back as they are)."""
    from . import BACKENDS

    return next((b for b in BACKENDS if seg_label(b) == label), label)


def derivative_names(subject: str, session: str | None, backend: str) -> dict[str, str]:
    """File names of every morphometry output, keyed like the workflow's outputnode fields."""
    g = group_prefix(subject, session)
    s = f"{g}_seg-{seg_label(backend)}"
    names = {
        "dseg": f"{s}_dseg.nii.gz",
        "dseg_tsv": f"{s}_dseg.tsv",
        "brain_mask": f"{s}_desc-brain_mask.nii.gz",
        "morph_tsv": f"{s}_desc-volume_morph.tsv",
        "to_template_xfm": f"{g}_from-T1w_to-{TEMPLATE_SPACE}_mode-image_xfm.h5",
        "from_template_xfm": f"{g}_from-{TEMPLATE_SPACE}_to-T1w_mode-image_xfm.h5",
        "logjacobian": f"{g}_space-{TEMPLATE_SPACE}_desc-logjacobian_map.nii.gz",
    }
    for tissue in ("CSF", "GM", "WM"):
        names[f"probseg_{tissue}"] = f"{s}_label-{tissue}_probseg.nii.gz"
    return names


def sidecar_name(name: str) -> str:
    for ext in (".nii.gz", ".tsv", ".h5"):
        if name.endswith(ext):
            return name[: -len(ext)] + ".json"
    raise ValueError(name)


def bidsignore_patterns() -> list[str]:
    text = resources.files("synthsr_nipype.morphometry").joinpath("data/bidsignore.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def update_bidsignore(output_dir: str | os.PathLike) -> Path:
    """Merge the morphometry patterns into the ``.bidsignore`` that the BIDS-derivatives writer
    keeps (:func:`synthsr_nipype.bids.derivatives.write_bidsignore`): existing lines kept."""
    from ..bids.derivatives import write_bidsignore

    return write_bidsignore(output_dir, bidsignore_patterns())


def write_morphometry_derivatives(
    output_dir: str | os.PathLike,
    *,
    subject: str,
    session: str | None,
    backend: str,
    files: Mapping[str, str | None],
    metadata: Mapping[str, Any],
    sources: Sequence[str],
) -> dict[str, str]:
    """Copy the outputs (``files``: outputnode field → path) under their BIDS names, with sidecars.

    Every image, table and transform gets a JSON sidecar with ``Sources`` and ``metadata``
    (backend, its version, seeds, model). Returns field → written path.
    """
    names = derivative_names(subject, session, backend)
    folder = anat_dir(output_dir, subject, session)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for field, src in files.items():
        if not src or field not in names:
            continue
        dest = atomic_copy(src, folder / names[field])
        written[field] = str(dest)
        if field == "dseg_tsv":
            continue  # the look-up table is described by the dseg sidecar
        side = {**metadata, "Sources": list(sources)}
        if field == "morph_tsv":
            side.update(MORPH_COLUMNS_META)
        elif field == "logjacobian":
            side.update(
                Description="log det Jacobian of the T1w-to-template SyN warp, affine part removed "
                "(> 0: the subject is locally larger than the template)",
                SpatialReference=TEMPLATE_SPACE,
            )
        elif field.endswith("_xfm"):
            side.update(Type="ITK composite (affine + SyN displacement field)", Software="ANTs (antspyx)")
        atomic_write_json(folder / sidecar_name(names[field]), side)
    update_bidsignore(output_dir)
    return written
