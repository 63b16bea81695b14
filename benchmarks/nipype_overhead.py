"""Nipype scheduling overhead: `synthsr-bids --nprocs 2` against the same inferences run bare, 2 at a time.

A 4-subject dataset (one thick-slice scan each, simulated from the real 0.8 mm T1 at 5 mm axial, so fusion is a
pass-through) is processed twice:

* bare: a fresh Python process (this script with ``--bare-jobs``) that imports the package and runs
  ``synthsr_nipype.inference.run`` + write on the 4 scans in a pool of 2 worker processes with 1 thread each
  (what a careful script would do);
* nipype: ``synthsr-bids bids out participant --nprocs 2 --omp-nthreads 1`` (MultiProc), fresh work dir.

Both are timed from process start to exit, so interpreter start-up and imports, which any script pays, count
on both sides. Overhead = nipype / bare - 1 (target: at most 10 %). ``pool_s`` is the bare pool alone
(imports excluded) and ``overhead_vs_pool`` the stricter ratio against it. Use the full-size network so compute
dominates:

    python benchmarks/nipype_overhead.py --model ../shared/fixtures/tf-reference/devset/models/full_weights.h5 \
        --repeat 3 --json benchmarks/nipype_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def build_dataset(root: Path, n_subjects: int) -> list[Path]:
    from synthsr_nipype.inference.simulate import simulate_acquisition

    hires = nib.load(SHARED / "data" / "real" / "hires-t1" / "T1.nii.gz")
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "overhead", "BIDSVersion": "1.9.0"}))
    scans = []
    for index in range(1, n_subjects + 1):
        anat = root / f"sub-{index:02d}" / "anat"
        anat.mkdir(parents=True)
        image = simulate_acquisition(hires, (1.0, 1.0, 5.0), tilt_degrees=3.0 * index, noise=0.01, seed=index)
        path = anat / f"sub-{index:02d}_acq-ax_T1w.nii.gz"
        nib.save(image, path)
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps({"SliceThickness": 5.0}))
        scans.append(path)
    return scans


def _bare_one(args: tuple[str, str, str]) -> float:
    import torch

    from synthsr_nipype.atomic import atomic_write_nifti
    from synthsr_nipype.inference import run

    torch.set_num_threads(1)
    source, model, target = args
    start = time.perf_counter()
    atomic_write_nifti(target, run(source, model=model, threads=1, device="cpu"))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times (a shared machine is noisy)")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--bare-jobs", default=None, help=argparse.SUPPRESS)  # the bare side's own process
    args = parser.parse_args(argv)
    if args.bare_jobs:
        return bare_main(args.bare_jobs, args.nprocs)
    rows = []
    for _ in range(max(1, args.repeat)):
        row = measure(args)
        if row is None:
            return 1
        rows.append(row)
        print(f"{'subjects':>8} {'nprocs':>6} {'bare s':>8} {'pool s':>7} {'synthsr-bids s':>15} {'overhead':>9} "
              f"{'vs pool':>8}")
        print(f"{row['subjects']:>8} {row['nprocs']:>6} {row['bare_s']:>8.1f} {row['pool_s']:>7.1f} "
              f"{row['nipype_s']:>15.1f} {100 * row['overhead']:>8.1f}% {100 * row['overhead_vs_pool']:>7.1f}%",
              flush=True)
    overheads = sorted(r["overhead"] for r in rows)
    summary = {"runs": rows, "overhead_min": overheads[0], "overhead_median": overheads[len(overheads) // 2],
               "overhead_max": overheads[-1]}
    if len(rows) > 1:
        print(f"overhead over {len(rows)} runs: min {100 * overheads[0]:.1f} %, median "
              f"{100 * summary['overhead_median']:.1f} %, max {100 * overheads[-1]:.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def measure(args: argparse.Namespace) -> dict | None:
    """One bare run and one synthsr-bids run on a fresh dataset; None when synthsr-bids failed."""
    model = str(Path(args.model).resolve())
    with tempfile.TemporaryDirectory(prefix="synthsr-overhead-") as tmp:
        tmp_path = Path(tmp)
        scans = build_dataset(tmp_path / "bids", args.subjects)
        # warm the converted-weight cache so neither side pays the HDF5 conversion
        from synthsr_nipype.model import load_model

        load_model(model)
        bare_out = tmp_path / "bare"
        bare_out.mkdir()
        jobs_file = tmp_path / "bare_jobs.json"
        jobs_file.write_text(json.dumps([(str(s), model, str(bare_out / s.name)) for s in scans]))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, __file__, "--bare-jobs", str(jobs_file), "--model", model,
                                 "--nprocs", str(args.nprocs)], capture_output=True, text=True)
        bare = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return None
        pool = json.loads(result.stdout.strip().splitlines()[-1])

        command = [sys.executable, "-m", "synthsr_nipype.cli.bids_app", str(tmp_path / "bids"), str(tmp_path / "out"),
                   "participant", "--model", model, "--nprocs", str(args.nprocs), "--omp-nthreads", "1",
                   "-w", str(tmp_path / "work"), "--device", "cpu"]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
        nipype = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return None
        shutil.rmtree(tmp_path / "work", ignore_errors=True)
    return {"subjects": args.subjects, "nprocs": args.nprocs, "bare_s": round(bare, 2),
            "pool_s": round(pool["pool_s"], 2), "per_scan_s": [round(t, 2) for t in pool["per_scan_s"]],
            "nipype_s": round(nipype, 2), "overhead": round(nipype / bare - 1, 4),
            "overhead_vs_pool": round(nipype / pool["pool_s"] - 1, 4)}


def bare_main(jobs_file: str, nprocs: int) -> int:
    """The bare side, in its own process: the pool over the jobs; prints its timings as JSON."""
    jobs = [tuple(job) for job in json.loads(Path(jobs_file).read_text())]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=nprocs) as pool:
        per_scan = list(pool.map(_bare_one, jobs))
    print(json.dumps({"pool_s": time.perf_counter() - start, "per_scan_s": per_scan}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
