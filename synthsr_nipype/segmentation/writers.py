"""Writing a :class:`~synthsr_nipype.segmentation.api.SynthSegResult` in mri_synthseg's file formats.

Every file goes through the project's atomic writer.  The CSVs are ``csv.writer``'s (lines end with CRLF):
a ``subject`` header then one row per image, numbers as numpy prints them (volumes) or ``%.4f`` (QC).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_nifti, atomic_write_text
from .api import SynthSegResult


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def volumes_csv(results: Sequence[SynthSegResult], columns: Sequence[str] | None = None) -> str:
    """The ``--vol`` table of the results (the same columns each); with no result, ``columns`` gives the
    header, as the reference writes it before its first image."""
    header = ["subject", *(columns if columns is not None else results[0].volumes)]
    rows = [header]
    for res in results:
        if list(res.volumes) != header[1:]:
            raise ValueError(f"{res.source}: other volume columns than the table's")
        scalar = np.dtype(res.volumes_dtype).type
        rows.append([res.subject, *(str(scalar(v)) for v in res.volumes.values())])
    return _csv(rows)


def qc_csv(results: Sequence[SynthSegResult], columns: Sequence[str] | None = None) -> str:
    """The ``--qc`` table (scores of QC classes 1 onwards, ``%.4f``)."""
    if any(r.qc is None for r in results):
        raise ValueError("a result without QC scores (run with qc=True)")
    rows = [["subject", *(columns if columns is not None else results[0].qc)]]
    rows += [[r.subject, *("%.4f" % v for v in r.qc.values())] for r in results]
    return _csv(rows)


def write_outputs(result: SynthSegResult, seg: str | os.PathLike[str], *,
                  posteriors: str | os.PathLike[str] | None = None,
                  resampled: str | os.PathLike[str] | None = None,
                  volumes: str | os.PathLike[str] | None = None,
                  qc: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write the files mri_synthseg would write for one image; returns what was written, by kind.

    The resampled image is written only when resampling happened (as the reference), the posteriors only
    when the result holds them.
    """
    written = {}
    for path in (seg, posteriors, resampled, volumes, qc):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    written["seg"] = atomic_write_nifti(seg, result.segmentation)
    if posteriors is not None:
        if result.posteriors is None:
            raise ValueError("posteriors requested but the result has none (run with posteriors=True)")
        written["posteriors"] = atomic_write_nifti(posteriors, result.posteriors)
    if resampled is not None and result.resampled is not None:
        written["resampled"] = atomic_write_nifti(resampled, result.resampled)
    if volumes is not None:
        written["volumes"] = atomic_write_text(volumes, volumes_csv([result]))
    if qc is not None:
        written["qc"] = atomic_write_text(qc, qc_csv([result]))
    return written
