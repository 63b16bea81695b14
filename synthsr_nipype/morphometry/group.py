"""Group level: participant ``_morph.tsv`` files → one table, z-scores and outlier flags.

The group tables never mix segmentation backends or SynthSR models: their volumes are not
comparable (different label sets, different synthetic contrasts), so :func:`collect_volumes`
refuses with :class:`GroupError` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import read_tsv
from ..errors import GroupError
from ..segmentation.quality import qc_flags
from .derivatives import backend_from_label
from .labels import TIV_NAME

#: |z| above which a volume is flagged as an outlier
OUTLIER_Z = 3.0
ID_COLUMNS = ["participant_id", "session_id", "seg_backend", "synthsr_model"]


def _model_name(morph_json: Path, folder: Path) -> str:
    """SynthSR model that made the T1w: the morph sidecar, else the SynthSR T1w sidecar."""
    candidates = [morph_json, *sorted(folder.glob("*desc-synthsr_T1w.json"))]
    for path in candidates:
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        model = meta.get("SynthSRModel") or meta.get("Model")
        if isinstance(model, dict) and model.get("Name"):
            return str(model["Name"])
        if isinstance(model, str) and model:
            return model
    return "n/a"


def collect_volumes(
    output_dir: str | os.PathLike,
    *,
    seg_backend: str | None = None,
    model: str | None = None,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
    desc: str = "volume",
) -> pd.DataFrame:
    """Long table of every participant ``_desc-<desc>_morph.tsv`` under ``output_dir`` (pybids).

    Columns: participant_id, session_id, seg_backend, synthsr_model, then the table's own
    (``volume``: index, name, volume-mm3; ``thickness``: index, name, thickness-mm, volume-mm3).
    """
    from bids import BIDSLayout

    root = Path(output_dir)
    if not (root / "dataset_description.json").exists():
        raise GroupError(f"{root} is not a derivatives dataset (no dataset_description.json); "
                         "run the participant level first")
    layout = BIDSLayout(root, validate=False, config=["bids", "derivatives"])
    query: dict[str, Any] = {"suffix": "morph", "desc": desc, "extension": ".tsv"}
    if participant_label:
        query["subject"] = [p[4:] if p.startswith("sub-") else p for p in participant_label]
    if session_label:  # then subjects without sessions are left out, as at the participant level
        query["session"] = [s[4:] if s.startswith("ses-") else s for s in session_label]
    frames = []
    for bf in layout.get(**query):
        ents = bf.get_entities()
        path = Path(bf.path)
        table = read_tsv(path)
        table.insert(0, "synthsr_model", _model_name(path.with_name(path.name[: -len(".tsv")] + ".json"), path.parent))
        table.insert(0, "seg_backend", backend_from_label(str(ents.get("segmentation", "n/a"))))
        table.insert(0, "session_id", f"ses-{ents['session']}" if ents.get("session") else "n/a")
        table.insert(0, "participant_id", f"sub-{ents['subject']}")
        frames.append(table)
    if not frames:
        selected = "".join(f" for {flag} {' '.join(labels)}" for flag, labels in
                           (("--participant-label", participant_label), ("--session-label", session_label))
                           if labels)
        what = "volumes" if desc == "volume" else f"{desc} tables"
        raise GroupError(f"no participant {what} (*_desc-{desc}_morph.tsv) found under {root}{selected}; "
                         "the participant level writes them only with --seg-backend or --tbm")
    long = pd.concat(frames, ignore_index=True)
    if seg_backend is not None:
        long = long[long["seg_backend"] == seg_backend]
    if model is not None:
        long = long[long["synthsr_model"] == model]
    if long.empty:
        raise GroupError(f"no participant volumes for backend={seg_backend!r} model={model!r} under {root}")
    for column, option in (("seg_backend", "--seg-backend"), ("synthsr_model", "--model")):
        values = sorted(long[column].unique())
        if len(values) > 1:
            raise GroupError(
                f"refusing to mix {column.replace('_', ' ')}s in one table ({', '.join(values)}); "
                f"select one with {option}"
            )
    # stable: each participant's rows keep their table's order (the backend's label order, not alphabetical)
    return long.sort_values(["participant_id", "session_id"], kind="stable").reset_index(drop=True)


def wide_table(long: pd.DataFrame, value: str = "volume-mm3") -> pd.DataFrame:
    """One row per subject/session, one column per structure (its ``value``), TIV last."""
    wide = long.pivot_table(index=ID_COLUMNS, columns="name", values=value, aggfunc="first", sort=False)
    # structures in the order of the first participant's table, TIV at the end
    order = [n for n in dict.fromkeys(long["name"]) if n != TIV_NAME]
    if TIV_NAME in wide.columns:
        order.append(TIV_NAME)
    wide = wide.reindex(columns=order).reset_index()
    wide.columns.name = None
    return wide.sort_values(["participant_id", "session_id"], kind="stable").reset_index(drop=True)


def zscores(wide: pd.DataFrame, threshold: float = OUTLIER_Z) -> pd.DataFrame:
    """Long table of z-scores per structure (raw and ICV-normalised), with outlier flags.

    z uses the sample standard deviation (ddof=1); with n subjects no |z| can exceed
    (n-1)/sqrt(n), so flags need n ≥ 11 to be possible at |z| > 3: below
    :data:`~.plausibility.MIN_N_STATISTICS` rows the z columns are n/a (the volumes and
    fractions are kept).
    """
    from .plausibility import MIN_N_STATISTICS

    structures = [c for c in wide.columns if c not in ID_COLUMNS]
    small = len(wide) < MIN_N_STATISTICS
    rows = []
    tiv = wide[TIV_NAME] if TIV_NAME in wide.columns else None
    for name in structures:
        vol = wide[name].astype(float)
        z = ((vol - vol.mean()) / vol.std(ddof=1) if vol.count() > 1 and not small
             else pd.Series(np.nan, index=vol.index))
        if tiv is not None and name != TIV_NAME:
            frac = vol / tiv
            z_icv = ((frac - frac.mean()) / frac.std(ddof=1) if frac.count() > 1 and not small
                     else pd.Series(np.nan, index=vol.index))
        else:
            frac = z_icv = pd.Series(np.nan, index=vol.index)
        for i in wide.index:
            rows.append({
                "participant_id": wide.at[i, "participant_id"],
                "session_id": wide.at[i, "session_id"],
                "name": name,
                "volume-mm3": vol[i],
                "z": z[i],
                "icv_fraction": frac[i],
                "z_icv": z_icv[i],
                "outlier": bool(abs(z[i]) > threshold or abs(z_icv[i]) > threshold),
            })
    return pd.DataFrame(rows)


def _selected_sidecars(output_dir: str | os.PathLike, pattern: str, participant_label: list[str] | None,
                       session_label: list[str] | None):
    """(sidecar, its JSON, its name's entities) of every readable sidecar matching ``pattern`` under
    ``output_dir`` whose subject and session are selected (labels with or without ``sub-``/``ses-``)."""
    subjects = {p[4:] if p.startswith("sub-") else p for p in participant_label or []}
    sessions = {s[4:] if s.startswith("ses-") else s for s in session_label or []}
    for sidecar in sorted(Path(output_dir).glob(pattern)):
        parts = dict(part.split("-", 1) for part in sidecar.name.split("_")[:-1] if "-" in part)
        if (subjects and parts.get("sub") not in subjects) or (sessions and parts.get("ses") not in sessions):
            continue
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        yield sidecar, meta, parts


def _row_ids(output_dir: str | os.PathLike, sidecar: Path, parts: dict[str, str]) -> tuple[str, str, str]:
    """participant_id, session_id (``n/a`` without sessions) and the image's path relative to ``output_dir``."""
    image = sidecar.relative_to(Path(output_dir)).as_posix()[: -len(".json")] + ".nii.gz"
    return f"sub-{parts['sub']}", f"ses-{parts['ses']}" if parts.get("ses") else "n/a", image


QC_COLUMNS = ["participant_id", "session_id", "image", "kind", "MeanReliability", "UncoveredFraction",
              "TTADisagreement", "RegistrationResidual", "flags", "report"]


def collect_qc(output_dir: str | os.PathLike, *, participant_label: list[str] | None = None,
               session_label: list[str] | None = None) -> pd.DataFrame:
    """Every SynthSR output's and fused image's QC numbers (their sidecars' ``ReliabilityQC``, docs/qc.md),
    worst mean reliability first, each with its subject's report."""
    rows = []
    for sidecar, meta, parts in _selected_sidecars(output_dir, "sub-*/**/anat/sub-*_T1w.json",
                                                   participant_label, session_label):
        qc = meta.get("ReliabilityQC")
        if "_res-native_" in sidecar.name or not isinstance(qc, dict):
            continue
        residual = qc.get("RegistrationResidual")
        participant, session, image = _row_ids(output_dir, sidecar, parts)
        rows.append({
            "participant_id": participant,
            "session_id": session,
            "image": image,
            "kind": "fused" if parts.get("desc") == "synthsr" else "scan",
            "MeanReliability": qc.get("MeanReliability"),
            "UncoveredFraction": qc.get("UncoveredFraction"),
            "TTADisagreement": qc.get("TTADisagreement"),
            "RegistrationResidual": max(residual) if residual else None,
            "flags": "; ".join(meta.get("QCFlags", [])),
            "report": f"{participant}.html",
        })
    table = pd.DataFrame(rows, columns=QC_COLUMNS)
    return table.sort_values("MeanReliability", kind="stable").reset_index(drop=True)


SEG_QC_ID_COLUMNS = ["participant_id", "session_id", "segmentation"]


def collect_segmentation_qc(output_dir: str | os.PathLike, *, participant_label: list[str] | None = None,
                            session_label: list[str] | None = None) -> pd.DataFrame:
    """SynthSeg's QC scores of every participant segmentation (the ``SynthSegQC`` of its ``_dseg.json``): one
    row per subject/session, one column per structure group, ``flags`` (the groups below
    :data:`~synthsr_nipype.segmentation.quality.QC_THRESHOLD`, one rule for the reports and the tables) and the
    subject's report; flagged rows first, then by subject/session.  Empty without SynthSeg segmentations."""
    rows, groups = [], []
    for sidecar, meta, parts in _selected_sidecars(output_dir, "sub-*/**/anat/sub-*_dseg.json",
                                                   participant_label, session_label):
        scores = meta.get("SynthSegQC")
        if not isinstance(scores, dict) or not scores:
            continue
        groups += [g for g in scores if g not in groups]
        participant, session, image = _row_ids(output_dir, sidecar, parts)
        rows.append({
            "participant_id": participant,
            "session_id": session,
            "segmentation": image,
            **{str(k): (float(v) if v is not None else None) for k, v in scores.items()},
            "flags": "; ".join(qc_flags(scores)),
            "report": f"{participant}.html",
        })
    table = pd.DataFrame(rows, columns=[*SEG_QC_ID_COLUMNS, *groups, "flags", "report"])
    if table.empty:
        return table
    table["_clean"] = table["flags"] == ""
    table = table.sort_values(["_clean", "participant_id", "session_id"], kind="stable")
    return table.drop(columns="_clean").reset_index(drop=True)
