"""What a scan is (entities, grid) and whether its header can be trusted.

Only the header is read: describing a dataset must be fast and must work on the
header-only or empty placeholder images of example datasets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Tolerances: headers are float32, so agreement is judged in float32 precision.
QSFORM_ATOL_MM = 0.1
ORTHO_ATOL = 1e-3

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


def header_problem(img) -> str:
    """Return why a NIfTI header is not trustworthy, or ``""`` when it is sane.

    Checks: 3D (or 4D with one volume), finite positive zooms, finite affine, orthonormal
    direction cosines, and agreement of qform and sform when both are set (a disagreement
    means different tools would put the brain in different places).
    """
    shape = img.shape
    if len(shape) < 3 or any(int(s) < 1 for s in shape[:3]):
        return f"not a 3D image (shape {tuple(int(s) for s in shape)})"
    if len(shape) > 3 and int(np.prod(shape[3:])) != 1:
        return f"4D image with {int(np.prod(shape[3:]))} volumes (expected one 3D volume)"
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        return f"voxel sizes must be finite and positive (got {zooms.tolist()})"
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        return "affine contains non-finite values"
    rzs = affine[:3, :3]
    col_norms = np.linalg.norm(rzs, axis=0)
    if np.any(col_norms <= 0):
        return "affine is singular"
    cosines = rzs / col_norms
    if not np.allclose(cosines.T @ cosines, np.eye(3), atol=ORTHO_ATOL):
        return "direction cosines are not orthonormal (sheared affine)"
    header = img.header
    if hasattr(header, "get_qform") and hasattr(header, "get_sform"):
        qcode = int(header["qform_code"])
        scode = int(header["sform_code"])
        if qcode > 0 and scode > 0:
            qform = header.get_qform()
            sform = header.get_sform()
            # Compare where the two put the corners of the volume, in mm: quaternions are
            # stored in float32, so sub-0.1 mm differences are rounding, not disagreement.
            corners = np.array(
                [[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                 for k in (0, shape[2] - 1)]
            ).T
            diff = float(np.abs((qform - sform) @ corners).max())
            if not diff <= QSFORM_ATOL_MM:
                return f"qform and sform disagree (by up to {diff:.3g} mm)"
        if qcode == 0 and scode == 0:
            return "neither qform nor sform is set (no position in space)"
    return ""


def describe_scan(path: str | Path, *, entities: dict[str, Any], relpath: str) -> ScanInfo:
    """Describe one scan from its header; never raises for bad files (``usable=False``)."""
    import nibabel as nib

    path = Path(path)
    info = ScanInfo(
        path=str(path),
        relpath=relpath,
        entities=source_entities(entities),
        suffix=str(entities.get("suffix", "")),
    )
    try:
        if path.stat().st_size == 0:
            info.reason = "empty file (0 bytes)"
            return info
        img = nib.load(str(path))
    except Exception as exc:  # any reader error means "unreadable", recorded, not raised
        info.reason = f"unreadable image ({type(exc).__name__}: {exc})".replace("\n", " ")
        return info
    try:
        problem = header_problem(img)
    except Exception as exc:
        problem = f"unreadable header ({type(exc).__name__}: {exc})"
    shape = [int(s) for s in img.shape[:3]]
    info.shape = shape
    if not problem:
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        info.zooms = [round(z, 6) for z in zooms]
        info.voxel_volume = float(np.prod(zooms))
        info.fov_mm = [round(s * z, 3) for s, z in zip(shape, zooms)]
        info.orientation = "".join(nib.aff2axcodes(img.affine))
        info.usable = True
    else:
        info.reason = problem
    return info
