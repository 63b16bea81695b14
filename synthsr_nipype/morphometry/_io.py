"""Atomic writers: every output is written to a temporary sibling and renamed into place.

Participant runs of a dataset may share an output folder; a reader must never see half a file,
and a crash must never leave a truncated file that a later run mistakes for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nb
import pandas as pd


def _tmp_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix (".nii.gz") so that writers that dispatch on it still work
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600: derivatives are shared read-only data
    return Path(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_tsv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    # BIDS TSV: tab separated, "n/a" for missing values, no index column
    return atomic_write_text(path, table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n"))


def atomic_copy(src: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy bytes unchanged (reruns give identical files), atomically."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_nifti(path: str | os.PathLike, img: nb.spatialimages.SpatialImage) -> Path:
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        img.to_filename(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
