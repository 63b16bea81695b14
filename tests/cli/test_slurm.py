"""Nipype's SLURM plugin for real: ``synthsr-bids ... participant --use-plugin slurm.yml``
through a real slurmctld/slurmd (the single-node cluster that ``.ci/slurm-up.sh`` starts).

Two subjects with one small scan each; the SLURM run must submit its nodes as batch jobs
that the cluster runs to completion, with the submitting environment (SYNTHSR_CACHE_DIR),
and write derivatives byte-identical to the same command with ``--nprocs 1`` (Linear).

Skips unless sbatch/squeue/sinfo exist and sinfo reports an idle or mixed node.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import DEVSET, TINY

INPUTS = DEVSET / "inputs"
#: subject -> (source scan in the devset, BIDS suffix, slice thickness)
SCANS = {
    "01": ("flair_crop.nii.gz", "FLAIR", 1.0),
    "02": ("oblique_0.9x0.9x5.nii.gz", "T1w", 5.0),
}
#: what the test gives sbatch; the template's echo shows, in each job's slurm-*.out, the
#: environment the job really got (nipype appends "python pyscript_....py" to the template)
SLURM_YML = """\
plugin: SLURM
plugin_args:
  sbatch_args: "--mem=2G -c 1 --time=30"
  template: |
    #!/bin/bash
    echo "SYNTHSR_CACHE_DIR=${SYNTHSR_CACHE_DIR-unset}"
"""
RUN_TIMEOUT_S = 300  # a normal run takes ~20 s; a job stuck in the queue must not hang CI


def _cluster_problem() -> str | None:
    """Why SLURM cannot be used here, or None when a node is idle/mixed."""
    for exe in ("sbatch", "squeue", "sinfo"):
        if shutil.which(exe) is None:
            return f"{exe} not found (no SLURM here; .ci/slurm-up.sh starts a local cluster)"
    try:
        info = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = info.stdout.split()
    if info.returncode != 0:
        return f"sinfo failed (exit {info.returncode}): {info.stderr.strip()[:200]}"
    if not {"idle", "mix"} & set(states):
        return f"no idle or mixed SLURM node (sinfo -h -o %t: {' '.join(states) or 'nothing'})"
    return None


def _write_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "synthsr slurm", "BIDSVersion": "1.9.0", "License": "CC0"}))
    (root / "participants.tsv").write_text("participant_id\n" + "".join(
        f"sub-{sub}\n" for sub in SCANS))
    for sub, (src, suffix, thick) in SCANS.items():
        anat = root / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        shutil.copyfile(INPUTS / src, anat / f"sub-{sub}_{suffix}.nii.gz")
        (anat / f"sub-{sub}_{suffix}.json").write_text(json.dumps({"SliceThickness": thick}))
    return root


def _digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under sub-*/ but the report's figures."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("sub-*/**/*"))
        if p.is_file() and "figures" not in p.relative_to(root).parts
    }


def _job_ids(work: Path) -> list[int]:
    """Ids of the jobs whose output nipype's batch folders hold (slurm-<id>.out)."""
    return sorted(int(m.group(1)) for p in work.rglob("batch/slurm-*.out")
                  if (m := re.fullmatch(r"slurm-(\d+)\.out", p.name)))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "synthsr_nipype.cli.bids_app", *args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same participant run with the SLURM plugin and with Linear (--nprocs 1)."""
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)
    if not (TINY.is_file() and all((INPUTS / src).is_file() for src, _, _ in SCANS.values())):
        pytest.skip("shared data (../shared) not available")
    base = tmp_path_factory.mktemp("slurm")
    bids = _write_dataset(base / "bids")
    (base / "slurm.yml").write_text(SLURM_YML)
    cache = base / "weight-cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYNTHSR_CACHE_DIR": str(cache)}
    # nipype's SLURM plugin names each job after $LOGNAME (a KeyError without it); containers and
    # CI runners often leave it unset, so the command must cope: run without it.
    env.pop("LOGNAME", None)
    common = ["participant", "--model", str(TINY), "--omp-nthreads", "1"]
    result = {"base": base, "cache": cache, "work": base / "work_slurm"}
    try:
        for name, extra in (
            ("slurm", ["--use-plugin", str(base / "slurm.yml"), "-w", str(base / "work_slurm")]),
            ("linear", ["--nprocs", "1", "-w", str(base / "work_linear")]),
        ):
            out = base / f"out_{name}"
            start = time.monotonic()
            proc = subprocess.run(_cli(str(bids), str(out), *common, *extra), env=env,
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
            seconds = time.monotonic() - start
            print(f"\n[{name}] exit {proc.returncode} in {seconds:.1f} s")
            result[name] = {"out": out, "proc": proc, "seconds": seconds}
        result["jobs"] = _job_ids(base / "work_slurm")
        print(f"[slurm] {len(result['jobs'])} SLURM job(s): {result['jobs']}")
        yield result
    finally:
        # A run that timed out leaves its jobs queued: cancel those submitted from its work
        # directory (the CLI runs the workflow there, so it is each job's working directory).
        work = str(base / "work_slurm")
        queue = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True,
                               timeout=30).stdout.splitlines()
        rows = [ln.split(None, 1) for ln in queue]
        mine = [row[0] for row in rows if len(row) == 2 and row[1].startswith(work)]
        if mine:
            subprocess.run(["scancel", *mine], capture_output=True, timeout=30)


def test_slurm_run_succeeds(runs):
    for name in ("slurm", "linear"):
        proc = runs[name]["proc"]
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        assert "2 scan(s) and 2 fused volume(s)" in proc.stdout, proc.stdout


def test_slurm_really_ran_the_nodes(runs):
    """Each submitted node has a batch script and a slurm-<id>.out written by the job, and
    slurmctld reports the jobs it still knows as COMPLETED with exit code 0."""
    work, jobs = runs["work"], runs["jobs"]
    scripts = sorted(work.rglob("batch/batchscript_*.sh"))
    assert len(jobs) == len(scripts), (jobs, scripts)
    # each subject's SynthSR and fusion nodes (sinks and merges run in the submitting process)
    names = [s.name for s in scripts]
    for node in ("_wf_synthsr.sh", "_wf_fusion.sh"):
        assert sum(n.endswith(node) for n in names) == len(SCANS), names
    known = 0
    for job in jobs:
        show = subprocess.run(["scontrol", "show", "job", "-o", str(job)], capture_output=True,
                              text=True, timeout=30)
        if show.returncode != 0:  # purged after MinJobAge (300 s by default)
            continue
        known += 1
        assert "JobState=COMPLETED" in show.stdout, show.stdout
        assert re.search(r"ExitCode=0:0", show.stdout), show.stdout
    assert known > 0, f"slurmctld knows none of the jobs {jobs}"


def test_slurm_jobs_get_the_submitting_environment(runs):
    """sbatch exports the submitting environment (--export=ALL by default): every job saw the
    test's SYNTHSR_CACHE_DIR."""
    outs = sorted(runs["work"].rglob("batch/slurm-*.out"))
    assert outs
    for out in outs:
        first = out.read_text(errors="replace").splitlines()[:1]
        assert first == [f"SYNTHSR_CACHE_DIR={runs['cache']}"], (out.name, first)


def test_slurm_outputs_identical_to_linear(runs):
    slurm, linear = _digest(runs["slurm"]["out"]), _digest(runs["linear"]["out"])
    # per subject (one scan each, so no transform): the scan's output, the fused volume and the
    # reliability map of each, every image with its sidecar
    expected = {
        f"sub-{sub}/anat/sub-{sub}_desc-{desc}{ext}"
        for sub, (_, suffix, _) in SCANS.items()
        for desc in (f"synthsr{suffix}_T1w", "synthsr_T1w", f"synthsr{suffix}Reliability_mask",
                     "synthsrReliability_mask")
        for ext in (".nii.gz", ".json")
    }
    print(f"\n{len(linear)} derivatives (linear), {len(slurm)} (slurm)")
    assert set(linear) == expected, sorted(set(linear) ^ expected)
    assert slurm == linear
