"""The embedded ``ants`` backend: template registration, Atropos tissue classes, TBM.

Each step runs ANTs in a fresh Python process (:func:`run_isolated`) so that the ITK thread
count is really the one asked for: ITK fixes it when first loaded in a process, and the only
bit-reproducible setting is one thread plus a fixed random seed (checked by the tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_tsv
from ..errors import AntsError
from .labels import ANTS_LABELS, dseg_table
from .volumetry import morph_table, with_tiv

DEFAULT_SEED = 20260101
#: SyN iterations at shrink factors 4, 2, 1 (antspyx default): iterating at full resolution
#: tripled the time for no visible gain in the tissue volumes
DEFAULT_REG_ITERATIONS = (40, 20, 0)


def ants_version() -> str:
    try:
        return f"antspyx {version('antspyx')}"
    except PackageNotFoundError:  # pragma: no cover - antspyx is a hard dependency
        return "antspyx (unknown version)"


#: modules whose functions the worker process may run (``python -m ..._worker``)
ISOLATED_MODULES = ("synthsr_nipype.morphometry._ants_impl",)


def run_isolated(
    function: str, *args: Any, num_threads: int = 1, module: str = ISOLATED_MODULES[0], **kwargs: Any
) -> dict[str, Any]:
    """Run ``<module>.<function>(*args, **kwargs)`` in a new interpreter with ``num_threads`` ITK threads.

    The fusion of the BIDS-App (:func:`synthsr_nipype.inference.fusion.fuse_images`) runs its
    registrations through here too: arguments and result go through JSON.
    """
    if module not in ISOLATED_MODULES:
        raise ValueError(f"run_isolated: module {module!r} is not one of {ISOLATED_MODULES}")
    env = dict(os.environ)
    env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(num_threads))
    # ANTs' own threads are the ones that matter; keep numpy/BLAS from oversubscribing the node
    env["OMP_NUM_THREADS"] = str(int(num_threads))
    with tempfile.TemporaryDirectory(prefix="synthsr-ants-") as tmp:
        # antspyx leaves temporaries (Atropos priors/posteriors) in TMPDIR: keep them in here
        env["TMPDIR"] = tmp
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps({"module": module, "function": function, "args": list(args),
                                   "kwargs": kwargs}))
        proc = subprocess.run(
            [sys.executable, "-m", "synthsr_nipype.morphometry._worker", str(req), str(res)],
            env=env, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 or not res.exists():
            raise AntsError(f"ANTs step {function!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(res.read_text())


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
        "register", str(Path(t1w).resolve()), str(Path(out_dir).resolve()), num_threads=num_threads,
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
        "segment", str(Path(t1w).resolve()), str(Path(from_template).resolve()), str(out.resolve()),
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
        "logjacobian", str(Path(to_template).resolve()), str(Path(t1w).resolve()), str(Path(out_file).resolve()),
        num_threads=num_threads, template_resolution=template_resolution,
    )
