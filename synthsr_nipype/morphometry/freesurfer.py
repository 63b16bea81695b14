"""FreeSurfer-labelled backends (``synthseg`` port, ``synthseg-fs``, ``recon-all``, ``samseg``): availability
and outputs.

Nothing here runs FreeSurfer: the command lines are the interfaces' (``argstr`` in
:mod:`synthsr_nipype.interfaces.freesurfer`, tested through their ``cmdline``), and the parsers
read the files the tools write.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..segmentation.quality import QC_THRESHOLD, qc_flags
from .labels import TIV_NAME, freesurfer_index

#: executables each backend needs on PATH
REQUIRED_EXECUTABLES = {
    "synthseg-fs": ("mri_synthseg",),
    "samseg": ("run_samseg",),
    "recon-all": ("recon-all", "mri_segstats"),
}


def find_license(fs_license_file: str | os.PathLike | None = None,
                 environ: Mapping[str, str] | None = None) -> Path | None:
    """The FreeSurfer licence: ``--fs-license-file``, else ``$FS_LICENSE``, else ``$FREESURFER_HOME/license.txt``."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if fs_license_file:
        candidates.append(Path(fs_license_file))
    if env.get("FS_LICENSE"):
        candidates.append(Path(env["FS_LICENSE"]))
    if env.get("FREESURFER_HOME"):
        home = Path(env["FREESURFER_HOME"])
        candidates += [home / "license.txt", home / ".license"]
    return next((c for c in candidates if c.is_file()), None)


def check_backend_available(
    backend: str, *, fs_license_file: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """``None`` when ``backend`` can run here, else one line naming what is missing.

    Called by the CLI before any work, so that a missing FreeSurfer ends the run at once (exit 2).
    """
    env = os.environ if environ is None else environ
    if backend == "ants":
        import importlib.util

        return None if importlib.util.find_spec("ants") else "antspyx is not installed (pip install antspyx)"
    if backend == "synthseg":  # the port: torch only; its weight files are checked when it loads them
        return None
    if backend not in REQUIRED_EXECUTABLES:
        raise ValueError(f"unknown segmentation backend {backend!r}")
    home = env.get("FREESURFER_HOME")
    where = f"FREESURFER_HOME={home}" if home else "FREESURFER_HOME is unset"
    path = env.get("PATH", "")
    missing = [exe for exe in REQUIRED_EXECUTABLES[backend] if shutil.which(exe, path=path) is None]
    if missing:
        return f"{', '.join(missing)} not found on PATH; {where}"
    if backend == "recon-all" and find_license(fs_license_file, env) is None:
        return (
            "FreeSurfer license not found: pass --fs-license-file, set FS_LICENSE, "
            f"or put license.txt in $FREESURFER_HOME ({where})"
        )
    return None


def freesurfer_version(environ: Mapping[str, str] | None = None) -> str | None:
    """The FreeSurfer build stamp (``$FREESURFER_HOME/build-stamp.txt``), ``None`` without FreeSurfer."""
    env = os.environ if environ is None else environ
    home = env.get("FREESURFER_HOME")
    if not home:
        return None
    stamp = Path(home) / "build-stamp.txt"
    return stamp.read_text().strip() if stamp.is_file() else None


def volumetry_metadata(backend: str, *, software_version: str | None = None,
                       qc_scores: Mapping[str, float] | None = None) -> dict[str, object]:
    """Sidecar provenance of a FreeSurfer-labelled segmentation; ``qc_scores`` (SynthSeg's automated QC,
    0-1 per structure group, docs/segmentation.md) go in as ``SynthSegQC``, the groups scoring below
    :data:`~synthsr_nipype.segmentation.quality.QC_THRESHOLD` as ``SynthSegQCFlags`` (one line each; empty
    when none) beside ``SynthSegQCThreshold``."""
    meta: dict[str, object] = {
        "SegmentationBackend": backend,
        "SoftwareVersion": software_version or freesurfer_version() or "FreeSurfer (build stamp not found)",
        "VolumeMethod": f"volumes as reported by {backend}",
    }
    if qc_scores:
        meta["SynthSegQC"] = {str(k): round(float(v), 4) for k, v in qc_scores.items()}
        meta["SynthSegQCThreshold"] = QC_THRESHOLD
        meta["SynthSegQCFlags"] = qc_flags(meta["SynthSegQC"])
    return meta


# -------------------------------------------------------------------------------- parsers
def parse_synthseg_volumes(csv_file: str | os.PathLike) -> list[tuple[int | None, str, float]]:
    """Rows of an ``mri_synthseg --vol`` CSV: one structure per column, first row of values.

    ``total intracranial`` becomes the TIV row; parcellation columns (``ctx-lh-*``) keep their
    names and get no index unless they are in the aseg table.
    """
    table = pd.read_csv(csv_file)
    row = table.iloc[0]
    out: list[tuple[int | None, str, float]] = []
    for col in table.columns:
        name = str(col).strip()
        if name.lower() == "subject":
            continue
        if name.lower() == "total intracranial":
            out.append((None, TIV_NAME, float(row[col])))
        else:
            out.append((freesurfer_index(name), name, float(row[col])))
    return out


_MEASURE = re.compile(r"^#\s*Measure\s+(.+)$")


def parse_freesurfer_stats(stats_file: str | os.PathLike) -> list[tuple[int | None, str, float]]:
    """Rows of a FreeSurfer stats file: ``mri_segstats`` tables and ``# Measure`` lines.

    Table rows give (SegId, StructName, Volume_mm3); ``# Measure`` lines (samseg.stats,
    sbtiv.stats, aseg.stats) give (name, value); the intracranial measure becomes TIV.
    """
    rows: list[tuple[int | None, str, float]] = []
    header: list[str] | None = None
    for line in Path(stats_file).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("# ColHeaders"):
            header = line.split()[2:]
            continue
        m = _MEASURE.match(line)
        if m:
            parts = [p.strip() for p in m.group(1).split(",")]
            # "# Measure Left-Putamen, 4500.1, mm^3" (samseg) or
            # "# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1.5e6, mm^3"
            name, value = parts[0], float(parts[-2])
            if name in ("Intra-Cranial", "EstimatedTotalIntraCranialVol", "eTIV"):
                rows.append((None, TIV_NAME, value))
            elif len(parts) == 3:
                rows.append((freesurfer_index(name), name, value))
            continue
        if line.startswith("#") or header is None:
            continue
        values = dict(zip(header, line.split()))
        rows.append((int(values["SegId"]), values["StructName"], float(values["Volume_mm3"])))
    return rows


def freesurfer_volumetry(
    seg_file: str | os.PathLike,
    reference: str | os.PathLike,
    out_dir: str | os.PathLike,
    rows: list[tuple[int | None, str, float]],
) -> dict[str, str]:
    """FreeSurfer label map → ``dseg`` on the SynthSR grid, its ``dseg.tsv``, and ``morph.tsv`` from ``rows``.

    Volumes come from the tool's own table (they are measured on the tool's grid, partial
    volume included), not from counting the resampled labels.
    """
    import nibabel as nb
    import numpy as np

    from ..atomic import atomic_write_nifti, atomic_write_tsv
    from .labels import FREESURFER_LABELS, Label, cortical_parcels, dseg_table
    from .volumetry import morph_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = nb.load(str(reference))
    seg = nb.load(str(seg_file))  # .mgz or NIfTI
    # nearest neighbour so that labels stay labels
    data = onto_grid(np.asarray(seg.dataobj).astype(np.int32), seg.affine, ref, order=0)
    dtype = np.uint8 if data.max() < 256 else np.int16 if data.max() < 32768 else np.int32
    img = nb.Nifti1Image(data.astype(dtype), ref.affine, ref.header)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1, 0)
    dseg = atomic_write_nifti(out / "dseg.nii.gz", img)
    present = {int(v) for v in np.unique(data) if v != 0}
    named = [*FREESURFER_LABELS, *cortical_parcels()]
    known = {lab.index for lab in named}
    extra = [Label(i, f"label-{i}", f"label-{i}", "GM" if 1000 <= i < 3000 else None) for i in sorted(present - known)]
    lut = atomic_write_tsv(out / "dseg.tsv", dseg_table([*named, *extra], present))
    morph = atomic_write_tsv(out / "desc-volume_morph.tsv", morph_table(rows))
    return {"dseg": str(dseg), "dseg_tsv": str(lut), "morph_tsv": str(morph)}


def onto_grid(data, affine, reference, *, order: int):
    """A 3-D array on the grid of ``affine`` resampled onto the grid of the image ``reference`` (``order`` 0:
    nearest neighbour, for labels; 1: linear, for probabilities); unchanged when the grids are the same."""
    import numpy as np
    from scipy.ndimage import affine_transform

    shape = tuple(reference.shape[:3])
    if data.shape == shape and np.allclose(affine, reference.affine, atol=1e-4):
        return data
    # reference voxel -> source voxel
    vox2vox = np.linalg.inv(affine) @ reference.affine
    return affine_transform(data, vox2vox[:3, :3], vox2vox[:3, 3], output_shape=shape, order=order,
                            mode="constant", cval=0)


def posterior_sums(posteriors, labels: Sequence[int], groups: Mapping[str, Sequence[int]],
                   reference: str | os.PathLike, out_dir: str | os.PathLike, *,
                   prefix: str = "probseg") -> dict[str, str]:
    """Per group, the sum of the posteriors (``posteriors``: a 4-D image, channel ``k`` the probability of
    label ``labels[k]``, as SynthSeg gives them) of the group's labels, linearly resampled onto the grid of
    ``reference``, in [0, 1] (a voxel whose posteriors are NaN, where SynthSeg's all vanish, reads 0); written as
    ``<prefix>_<group>.nii.gz`` (float32). Returns group -> path.
    """
    import nibabel as nb
    import numpy as np

    from ..atomic import atomic_write_nifti

    data = posteriors.dataobj
    channel = {int(lab): k for k, lab in enumerate(labels)}
    if len(channel) != posteriors.shape[-1]:
        raise ValueError(f"{len(channel)} labels for {posteriors.shape[-1]} posterior channels")
    ref = nb.load(str(reference))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for name, members in groups.items():
        total = np.zeros(posteriors.shape[:3], dtype=np.float32)
        for lab in members:
            if lab in channel:
                total += np.nan_to_num(np.asarray(data[..., channel[lab]], dtype=np.float32), nan=0.0)
        total = np.clip(onto_grid(total, posteriors.affine, ref, order=1), 0.0, 1.0).astype(np.float32)
        img = nb.Nifti1Image(total, ref.affine)
        img.header.set_xyzt_units("mm")
        written[name] = str(atomic_write_nifti(out / f"{prefix}_{name}.nii.gz", img))
    return written
