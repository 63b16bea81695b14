"""The embedded ``ants`` backend: template registration, Atropos tissue classes, TBM.

Each step runs ANTs in a fresh Python process (:func:`synthsr_nipype.isolation.run_isolated`) so that the ITK thread
count is really the one asked for: ITK fixes it when first loaded in a process, and the only
bit-reproducible setting is one thread plus a fixed random seed (checked by the tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_tsv
from ..isolation import ants_version, run_isolated
from .labels import ANTS_LABELS, dseg_table
from .volumetry import morph_table, with_tiv

DEFAULT_SEED = 20260101
#: the module the worker process imports for this backend's steps
STEPS = "synthsr_nipype.morphometry.ants_steps"
#: SyN iterations at shrink factors 4, 2, 1 (antspyx default): iterating at full resolution
#: tripled the time for no visible gain in the tissue volumes
DEFAULT_REG_ITERATIONS = (40, 20, 0)


def provenance(*, seed: int, num_threads: int, template_resolution: int) -> dict[str, Any]:
    """What a sidecar needs to reproduce an ants-backend output."""
    return {
        "SegmentationBackend": "ants",
        "SoftwareVersion": ants_version(),
        "RandomSeed": seed,
        "AtroposRandomSeed": "constant (Atropos --use-random-seed 0)",
        "NumberOfThreads": num_threads,
        "Deterministic": num_threads == 1,
        "TemplateResolution": template_resolution,
    }


def register_to_template(
    t1w: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    template_resolution: int = 1,
    seed: int = DEFAULT_SEED,
    num_threads: int = 1,
    reg_iterations: tuple[int, ...] = DEFAULT_REG_ITERATIONS,
    skull_stripped: bool | None = None,
) -> dict[str, Any]:
    """Affine + SyN registration of ``t1w`` to MNI152NLin2009aSym.

    Returns ``to_template`` (ITK composite ``.h5`` that resamples the T1w into the template) and
    ``from_template`` (its inverse), ``affine_log_det`` and ``skull_stripped`` (decided from the
    image when ``None``: see :mod:`.brainmask`).
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return run_isolated(
        STEPS, "register", str(Path(t1w).resolve()), str(Path(out_dir).resolve()), num_threads=num_threads,
        template_resolution=template_resolution, seed=seed, reg_iterations=list(reg_iterations),
        skull_stripped=skull_stripped,
    )


def segment_tissues(
    t1w: str | os.PathLike,
    from_template: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    template_resolution: int = 1,
    seed: int = DEFAULT_SEED,
    num_threads: int = 1,
    skull_stripped: bool | None = None,
    mrf: float = 0.1,
    iterations: int = 5,
    prior_weight: float = 0.1,
) -> dict[str, Any]:
    """Atropos CSF/GM/WM with warped MNI priors; writes dseg, probsegs, mask, ``dseg.tsv``, ``morph.tsv``.

    ``skull_stripped=None`` decides from the image: a skull-stripped brain fills the warped
    template mask (non-zero volume / mask volume < 1.35); then the mask is the image's non-zero
    brain, otherwise (full head) the warped template brain mask. TIV is the mask volume; tissue
    volumes are posterior sums (partial-volume aware), so they add up to TIV.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = run_isolated(
        STEPS, "segment", str(Path(t1w).resolve()), str(Path(from_template).resolve()), str(out.resolve()),
        num_threads=num_threads, template_resolution=template_resolution, seed=seed,
        skull_stripped=skull_stripped, mrf=mrf, iterations=iterations, prior_weight=prior_weight,
    )
    rows = [(lab.index, lab.abbreviation, res["volumes"][lab.abbreviation]) for lab in ANTS_LABELS]
    morph = morph_table(with_tiv(rows, res["mask_volume"]))
    res["morph_tsv"] = str(atomic_write_tsv(out / "desc-volume_morph.tsv", morph))
    res["dseg_tsv"] = str(atomic_write_tsv(out / "dseg.tsv", dseg_table(ANTS_LABELS)))
    res["tiv"] = res["mask_volume"]
    return res


def compute_logjacobian(
    to_template: str | os.PathLike,
    t1w: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    template_resolution: int = 1,
    num_threads: int = 1,
) -> dict[str, Any]:
    """Affine-free log-Jacobian determinant of the subject→template warp, on the template grid."""
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    return run_isolated(
        STEPS, "logjacobian", str(Path(to_template).resolve()), str(Path(t1w).resolve()), str(Path(out_file).resolve()),
        num_threads=num_threads, template_resolution=template_resolution,
    )
