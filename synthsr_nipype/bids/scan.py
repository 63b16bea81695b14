"""What a scan is (entities, grid) and whether its header can be trusted.

Only the header is read: describing a dataset must be fast and must work on the
header-only or empty placeholder images of example datasets.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.checks import header_problem

#: Entities that describe the acquisition (kept in output names), in BIDS order.
SOURCE_ENTITIES: tuple[str, ...] = (
    "subject",
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "run",
    "echo",
    "flip",
    "inv",
    "mt",
    "part",
    "chunk",
)


@dataclass
class ScanInfo:
    """One anatomical scan: BIDS entities, grid, and whether it can be processed."""

    path: str
    relpath: str
    entities: dict[str, Any]
    suffix: str
    shape: list[int] = field(default_factory=list)
    zooms: list[float] = field(default_factory=list)
    orientation: str = ""
    fov_mm: list[float] = field(default_factory=list)
    voxel_volume: float = math.inf
    usable: bool = False
    reason: str = ""
    slice_thickness: float | None = None  # BIDS SliceThickness (mm), from the sidecar
    slice_direction: str | None = None  # BIDS SliceEncodingDirection (i, j, k)

    @property
    def subject(self) -> str:
        return str(self.entities["subject"])

    @property
    def session(self) -> str | None:
        ses = self.entities.get("session")
        return None if ses is None else str(ses)

    @property
    def name(self) -> str:
        return Path(self.relpath).name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanInfo:
        return cls(**data)


def source_entities(entities: dict[str, Any]) -> dict[str, Any]:
    """Entities that name the acquisition (subject, session, acq...), as plain strings."""
    return {k: str(entities[k]) for k in SOURCE_ENTITIES if entities.get(k) is not None}


def _own_sidecar(path: Path) -> tuple[dict[str, Any], str]:
    """The scan's own JSON sidecar (``{}`` when it has none) and why it cannot be read, or ``""``."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    sidecar = path.with_name(name + ".json")
    if not sidecar.is_file():
        return {}, ""
    try:
        data = json.loads(sidecar.read_bytes())
    except (OSError, ValueError) as exc:
        return {}, f"sidecar {sidecar.name} is not valid JSON ({str(exc).splitlines()[0][:120]})"
    if not isinstance(data, dict):
        return {}, f"sidecar {sidecar.name} is not a JSON object"
    return data, ""


def sidecar_problem(path: Path) -> str:
    """Why the scan's own JSON sidecar cannot be read, or ``""`` (also when it has none)."""
    return _own_sidecar(Path(path))[1]


def slice_geometry(path: str | Path) -> tuple[float | None, str | None]:
    """``SliceThickness`` (mm, a positive number, else ``None``) and ``SliceEncodingDirection``
    (``i``/``j``/``k``, sign dropped, else ``None``) from the scan's own sidecar: slice gaps the
    header cannot show (docs/qc.md)."""
    data, _ = _own_sidecar(Path(path))
    thickness = data.get("SliceThickness")
    ok = isinstance(thickness, (int, float)) and not isinstance(thickness, bool) and math.isfinite(thickness)
    direction = str(data.get("SliceEncodingDirection", "")).rstrip("-")
    return (float(thickness) if ok and thickness > 0 else None), (direction if direction in ("i", "j", "k") else None)


def describe_scan(path: str | Path, *, entities: dict[str, Any], relpath: str) -> ScanInfo:
    """Describe one scan from its header; never raises for bad files (``usable=False``, with
    the reason from :func:`~synthsr_nipype.inference.checks.header_problem`)."""
    import nibabel as nib

    path = Path(path)
    info = ScanInfo(
        path=str(path),
        relpath=relpath,
        entities=source_entities(entities),
        suffix=str(entities.get("suffix", "")),
    )
    try:
        problem = header_problem(path) or sidecar_problem(path)
        img = None if problem else nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader error means "unreadable", recorded, not raised
        problem = f"unreadable image ({type(exc).__name__}: {exc})".replace("\n", " ")
    if problem:
        info.reason = problem
        return info
    shape = [int(s) for s in img.shape[:3]]
    # from the affine that places the image, as the pipeline does (pixdim may disagree)
    zooms = [float(z) for z in nib.affines.voxel_sizes(img.affine)[:3]]
    info.shape = shape
    info.zooms = [round(z, 6) for z in zooms]
    info.voxel_volume = float(np.prod(zooms))
    info.fov_mm = [round(s * z, 3) for s, z in zip(shape, zooms)]
    info.orientation = "".join(nib.aff2axcodes(img.affine))
    info.slice_thickness, info.slice_direction = slice_geometry(path)
    info.usable = True
    return info
