"""JSON sidecar content: provenance of every derivative image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def grid_description(img) -> dict[str, Any]:
    """Describe the voxel grid of an image (the 1 mm grid of SynthSR outputs)."""
    import nibabel as nib

    zooms = [round(float(z), 4) for z in nib.affines.voxel_sizes(img.affine)[:3]]
    return {
        "VoxelSizeMM": zooms,
        "Shape": [int(s) for s in img.shape[:3]],
        "Orientation": "".join(nib.aff2axcodes(img.affine)),
        "Affine": np.round(np.asarray(img.affine, dtype=float), 4).tolist(),
        "Description": "1 mm isotropic grid" if np.allclose(zooms, 1.0, atol=1e-3)
        else "voxel grid",
    }


def software_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (for reproducibility)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "numpy", "nibabel", "scipy", "nipype", "pybids", "antspyx"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def synthsr_metadata(
    *,
    model_name: str,
    model_sha256: str,
    channels: Sequence[str],
    ct: bool,
    flip: bool,
    sharpen: bool,
    header_warnings: Sequence[str] = (),
    model_notes: str | None = None,
) -> dict[str, Any]:
    """What a SynthSR run did (written by the SynthSR node, completed by the sink);
    ``header_warnings``: what was odd but processed in the inputs' headers
    (:func:`~synthsr_nipype.inference.checks.header_warnings`, "file: note"); ``model_notes``: what
    the user must know about the model (:class:`~synthsr_nipype.model.registry.ModelNotes`)."""
    from .. import __version__

    meta = {
        "Description": "Synthetic 1 mm MP-RAGE-like T1-weighted image predicted by SynthSR",
        "SoftwareName": "synthsr-nipype",
        "SoftwareVersion": __version__,
        # BIDS defines SoftwareVersions as a string (the schema validator rejects an object)
        "SoftwareVersions": ", ".join(f"{dist} {ver}" for dist, ver in software_versions().items()),
        "Model": {"Name": model_name, "SHA256": model_sha256},
        **({"ModelNotes": model_notes} if model_notes else {}),
        "InputChannels": list(channels),
        "Flags": {"ct": bool(ct), "flip": bool(flip), "sharpen": bool(sharpen)},
    }
    if header_warnings:
        meta["HeaderWarnings"] = list(header_warnings)
    return meta


def derivative_sidecar(
    metadata: Mapping[str, Any], *, sources: Sequence[str], img=None, provenance: bool = True
) -> dict[str, Any]:
    """Complete sidecar: upstream metadata + Sources (BIDS URIs); with ``provenance``, this
    package's name and version where the metadata names no software; for an image (``img``)
    also SkullStripped and the grid."""
    from .. import __version__

    sidecar = dict(metadata)
    if provenance:
        sidecar.setdefault("SoftwareName", "synthsr-nipype")
        sidecar.setdefault("SoftwareVersion", __version__)
    sidecar["Sources"] = list(sources)
    if img is not None:
        # SynthSR predicts the whole field of view; nothing is masked out.
        sidecar["SkullStripped"] = False
        sidecar["Grid"] = grid_description(img)
    return sidecar
