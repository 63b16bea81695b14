"""Derivative names (pybids path patterns), BIDS URIs, dataset_description, .bidsignore."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, atomic_write_json
from ..citations import how_to_acknowledge

#: Extended pattern for anatomical derivatives. pybids' own derivatives pattern for T1w
#: lacks task/run/echo/part..., which raw anatomical names may carry (ds004332 has task-).
#: It is tried only after pybids' patterns, so names match pybids wherever pybids can name.
#: ``mask``: the reliability maps (docs/qc.md); ``res-native``: outputs on the input scan's grid.
EXTENDED_ANAT_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]"
    "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"
    "[_echo-{echo}][_flip-{flip}][_inv-{inv}][_mt-{mt}][_part-{part}][_space-{space}]"
    "[_chunk-{chunk}][_res-{res}][_desc-{desc}]_{suffix<T1w|mask>}{extension<.nii|.nii.gz|.json>|.nii.gz}"
)
#: Transforms (pybids' derivatives config knows ``from``, ``to`` and ``mode`` but has no pattern for them).
XFM_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]"
    "[_task-{task}][_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"
    "[_echo-{echo}][_flip-{flip}][_inv-{inv}][_mt-{mt}][_part-{part}][_chunk-{chunk}]"
    "_from-{from}_to-{to}_mode-{mode<image|points>}_{suffix<xfm>}{extension<.txt|.h5|.json>}"
)
#: Morphometry outputs pybids has no pattern for: a brain mask of a segmentation (pybids' mask
#: pattern lacks ``seg-``), the volume table (community ``_morph`` suffix), maps such as the
#: TBM log-Jacobian.
MORPH_PATTERN = (
    "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]"
    "[_space-{space}][_seg-{segmentation}][_label-{label}][_desc-{desc}]"
    "_{suffix<mask|morph|map>}{extension<.nii.gz|.tsv|.json>}"
)

#: Name of the raw dataset in BIDS URIs (``bids:raw:sub-01/anat/...``), see DatasetLinks.
RAW_DATASET_NAME = "raw"

BIDS_VERSION = "1.9.0"


def pybids_derivative_patterns() -> list[str]:
    """pybids' default path patterns for derivatives (its ``derivatives`` config)."""
    from bids.layout.models import Config

    return list(Config.load("derivatives").default_path_patterns or [])


def build_derivative_relpath(entities: Mapping[str, Any], *, extension: str = ".nii.gz") -> str:
    """Relative path of a derivative from its entities, with pybids' ``build_path``.

    pybids' derivatives patterns are tried first (strictly: every entity must have a place in
    the pattern); names they cannot express fall back to :data:`EXTENDED_ANAT_PATTERN`,
    :data:`XFM_PATTERN` and :data:`MORPH_PATTERN`.
    """
    from bids.layout.writing import build_path

    ents = {k: str(v) for k, v in entities.items() if v is not None}
    ents.setdefault("datatype", "anat")
    ents["extension"] = extension
    path = build_path(ents, pybids_derivative_patterns(), strict=True)
    if path is None:
        path = build_path(ents, [EXTENDED_ANAT_PATTERN, XFM_PATTERN, MORPH_PATTERN], strict=True)
    if path is None:
        raise ValueError(f"no derivative path pattern fits entities {ents}")
    return path


def scan_output_entities(source: Mapping[str, Any], source_suffix: str) -> dict[str, str]:
    """Entities of a per-scan output: the source's, plus ``desc-synthsr<Suffix>``, ``T1w``."""
    ents = {k: str(v) for k, v in source.items() if v is not None}
    ents.update(desc=f"synthsr{source_suffix}", suffix="T1w", datatype="anat")
    return ents


def reliability_entities(image_entities: Mapping[str, Any]) -> dict[str, str]:
    """Entities of an image's reliability map: the image's, ``desc-<its desc>Reliability``, ``mask``
    (``sub-01_acq-ax_desc-synthsrFLAIRReliability_mask``; the fused image's: ``desc-synthsrReliability``)."""
    ents = {k: str(v) for k, v in image_entities.items() if v is not None}
    ents.update(desc=f"{ents['desc']}Reliability", suffix="mask", datatype="anat")
    return ents


def native_entities(scan_entities: Mapping[str, Any]) -> dict[str, str]:
    """Entities of a per-scan output resampled onto its input's grid: the output's plus ``res-native``."""
    ents = {k: str(v) for k, v in scan_entities.items() if v is not None}
    ents["res"] = "native"
    return ents


#: BIDS keys of the entities that may tell two scans of one group apart, in BIDS order
_SCAN_ENTITY_KEYS = {"task": "task", "acquisition": "acq", "ceagent": "ce", "reconstruction": "rec",
                     "run": "run", "echo": "echo", "flip": "flip", "inv": "inv", "mt": "mt", "part": "part",
                     "chunk": "chunk"}


def reference_space_label(reference: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> str:
    """The ``to-`` label of the space of a group's reference scan: its output's ``desc``
    (``synthsrFLAIR``), followed by the entities that set it apart when another scan of the group has
    the same ``desc`` (``synthsrT1wacqax``), so a transform never reads as from a space to itself."""
    label = str(reference["desc"])
    twins = [o for o in others if str(o.get("desc")) == label]
    if not twins:
        return label
    for entity, key in _SCAN_ENTITY_KEYS.items():
        value = reference.get(entity)
        if value is not None and any(str(o.get(entity)) != str(value) for o in twins):
            label += f"{key}{value}"
    return label


def scan_xfm_entities(scan_entities: Mapping[str, Any], to: str) -> dict[str, str]:
    """Entities of the rigid transform that resamples a scan's SynthSR output onto the synthetic image of
    its group's reference scan (the fused image's grid): ``from-<scan desc>_to-<to>``, e.g.
    ``from-synthsrT2w_to-synthsrFLAIR`` (the scan's own entities place it; ``to``, from
    :func:`reference_space_label`, names the reference's space as sMRIPrep's ``to-T1w`` names its
    anatomical reference)."""
    ents = {k: str(v) for k, v in scan_entities.items() if v is not None and k not in ("desc", "suffix", "space")}
    ents.update({"from": str(scan_entities["desc"]), "to": to, "mode": "image", "suffix": "xfm",
                 "datatype": "anat"})
    return ents


def fused_output_entities(subject: str, session: str | None) -> dict[str, str]:
    """Entities of the fused, group-level output ``sub-X[_ses-Y]_desc-synthsr_T1w``."""
    ents = {"subject": subject, "desc": "synthsr", "suffix": "T1w", "datatype": "anat"}
    if session is not None:
        ents["session"] = session
    return ents


def bids_uri(relpath: str | Path, dataset: str = "") -> str:
    """BIDS URI of a file: ``bids:<dataset>:<relpath>`` (empty dataset = this dataset)."""
    return f"bids:{dataset}:{Path(relpath).as_posix()}"


# --------------------------------------------------------------------- dataset_description
def container_info() -> dict[str, str] | None:
    """The container this process runs in, as BIDS ``GeneratedBy[].Container`` (None outside one).

    Apptainer/Singularity announce the image file in the environment; the Dockerfile records its own tag
    ($SYNTHSR_CONTAINER_TAG), which an Apptainer image converted from it inherits, hence the order.
    """
    for variable, kind in (("APPTAINER_CONTAINER", "apptainer"), ("SINGULARITY_CONTAINER", "singularity")):
        if os.environ.get(variable):
            return {"Type": kind, "Tag": Path(os.environ[variable]).name}
    if os.environ.get("SYNTHSR_CONTAINER_TAG"):
        return {"Type": os.environ.get("SYNTHSR_CONTAINER_TYPE", "docker"), "Tag": os.environ["SYNTHSR_CONTAINER_TAG"]}
    return None


def dataset_description(bids_dir: str | Path) -> dict[str, Any]:
    """The derivative's ``dataset_description.json`` content for raw dataset ``bids_dir``."""
    from .. import CODE_URL, __version__

    bids_dir = Path(bids_dir).resolve()
    try:
        raw = json.loads((bids_dir / "dataset_description.json").read_text())
    except (OSError, ValueError):
        raw = {}
    source: dict[str, Any] = {"URL": bids_dir.as_uri()}
    if raw.get("DatasetDOI"):
        source["DOI"] = raw["DatasetDOI"]
    if raw.get("Name"):
        source["Name"] = raw["Name"]
    desc: dict[str, Any] = {
        "Name": "SynthSR derivatives" + (f" of {raw['Name']}" if raw.get("Name") else ""),
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "synthsr-nipype", "Version": __version__, "CodeURL": CODE_URL,
                         **({"Container": container} if (container := container_info()) else {})}],
        "SourceDatasets": [source],
        "DatasetLinks": {RAW_DATASET_NAME: bids_dir.as_uri()},
        "HowToAcknowledge": how_to_acknowledge(),
    }
    if raw.get("License"):
        desc["License"] = raw["License"]
    return desc


def write_dataset_description(output_dir: str | Path, bids_dir: str | Path) -> Path:
    """Write ``output_dir/dataset_description.json``, safe with concurrent participant runs.

    An existing identical file is left alone; otherwise the new content replaces it by an
    atomic rename, so a reader never sees a half-written file.
    """
    dest = Path(output_dir) / "dataset_description.json"
    content = dataset_description(bids_dir)
    try:
        if json.loads(dest.read_text()) == json.loads(json.dumps(content, default=str)):
            return dest
    except (OSError, ValueError):
        pass
    return atomic_write_json(dest, content)


def write_bidsignore(output_dir: str | Path, patterns: list[str]) -> Path:
    """Add non-BIDS paths (logs, work files) to ``.bidsignore``, keeping existing lines."""
    dest = Path(output_dir) / ".bidsignore"
    lines = dest.read_text().splitlines() if dest.exists() else []
    new = lines + [p for p in patterns if p not in lines]
    if new != lines or not dest.exists():
        atomic_write_bytes(dest, ("\n".join(new) + "\n").encode())
    return dest


#: What the BIDS validator skips in every participant output folder: logs, each scan's ITK transform (_xfm.txt:
#: not yet in the BIDS schema), the per-subject reports (the schema validator reports the figures folder
#: itself: "sub-*/figures/" does not match it).
PARTICIPANT_BIDSIGNORE = ("logs/", "*_xfm.txt", "*_xfm.json", "sub-*.html", "sub-*/figures")


def write_readme(output_dir: str | Path) -> Path:
    """The derivatives' README.md (what they are, where the methods and the plan are), unless one is there."""
    from .. import __version__

    readme = Path(output_dir) / "README.md"
    if not readme.exists():
        atomic_write_bytes(readme, (
            f"# SynthSR derivatives\n\nSynthetic 1 mm MP-RAGE-like T1-weighted images of the raw dataset "
            f"named in `dataset_description.json` (SourceDatasets), one per anatomical scan and one fused "
            f"per subject and session, written by synthsr-nipype {__version__}. Methods and references: "
            f"`logs/CITATION.md`; what ran: `logs/<run>/plan.txt`.\n").encode())
    return readme
