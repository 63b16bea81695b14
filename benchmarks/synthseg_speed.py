"""Speed and peak memory of the ``synthseg`` command on a whole head, against TensorFlow and the floor.

Each configuration runs ``synthseg`` in a fresh subprocess (its ``ru_maxrss`` is then the run's peak RSS) on the
fixture set's whole-head case (``flair_whole``: the py_synthsr FLAIR, 176x232x159, ``--parc --qc --vol``, so
both flip passes, the parcellation U-Net and the 224^3 QC network), with the set's weights.  The child first
measures the machine's fp32 matrix rate with its thread count (best of several 2048^2 matmuls, before and
after the run: the machine is shared).

    floor    = FLOPs of the networks run (read from the weight files' kernels, on the padded grid) / matmul rate
    vs TF    = wall time / the TensorFlow reference's wall time recorded in the fixture manifest (1 thread,
               same machine type, TF import and model build included, like ours)

    python benchmarks/synthseg_speed.py                 # 1 and 2 threads
    python benchmarks/synthseg_speed.py --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SET = REPO.parent / "shared" / "fixtures" / "synthseg-reference"
CASE = "flair_whole"
QC_SHAPE = 224


def conv_flops(path: Path, grid: tuple[int, int, int]) -> float:
    """2 x multiply-adds of every convolution in a weight file, each on its level's grid (grid / 2^level)."""
    from synthsr_nipype.model.keras_h5 import read_layers

    layers = read_layers(path)
    downs = [int(m[1]) for n in layers if (m := re.search(r"_conv_downarm_(\d+)_", n))]
    n_levels = max(downs) + 1 if downs else 1
    voxels = math.prod(grid)
    total = 0.0
    for name, weights in layers.items():
        kernel = weights.get("kernel")
        if kernel is None or kernel.ndim != 5:
            continue
        if m := re.search(r"_(?:conv_downarm|expand_down_merge)_(\d+)", name):
            level = int(m[1])
        elif m := re.search(r"_conv_uparm_(\d+)_", name):
            level = n_levels - 2 - (int(m[1]) - n_levels)
        elif name.startswith("qc_final"):
            level = n_levels
        else:  # likelihood
            level = 0
        total += 2.0 * kernel.size * voxels / 8**level
    return total


def child(threads: int, out: Path) -> dict:
    import resource

    from benchmarks.run import matmul_rate

    rate = matmul_rate(threads)
    case = next(c for c in json.loads((SET / "manifest.json").read_text())["cases"] if c["name"] == CASE)
    src = SET / case["input"]
    argv = [a.replace("{IN}", str(src)).replace("{OUT}", str(out)) for a in case["command"]]
    argv[argv.index("--threads") + 1] = str(threads)
    argv += ["--models-dir", str(SET / "devset" / "fshome" / "models")]
    start = time.perf_counter()
    from synthsr_nipype.cli import synthseg

    rc = synthseg.main(argv)
    wall = time.perf_counter() - start
    rate_after = matmul_rate(threads)
    padded = tuple(int(math.ceil(max(s, 128) / 32) * 32) for s in (176, 232, 159))  # aligned to RAS: same sizes
    models = SET / "devset" / "fshome" / "models"
    flops = (2 * conv_flops(models / "synthseg_2.0.h5", padded) + conv_flops(models / "synthseg_parc_2.0.h5", padded)
             + conv_flops(models / "synthseg_qc_2.0.h5", (QC_SHAPE,) * 3))
    return {"threads": threads, "rc": rc, "wall_s": wall, "peak_rss_gb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1e6, "matmul_gflops": max(rate, rate_after), "flops": flops,
        "tf_wall_s": case["run"]["wall_s"], "tf_threads": case["run"]["threads"],
        "tf_peak_rss_gb": int(case["run"]["max_rss"]) / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child, args.out)))
        return 0
    rows = []
    for threads in args.threads:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.synthseg_speed", "--child", str(threads),
                                   "--out", tmp], cwd=REPO, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        row = json.loads(line[7:])
        row["floor_s"] = row["flops"] / (row["matmul_gflops"] * 1e9)
        rows.append(row)
    print("threads  wall s  floor s  /floor  TF s (thr)  /TF   peak RSS GB (TF)")
    for r in rows:
        print(f"{r['threads']:7d} {r['wall_s']:7.1f} {r['floor_s']:8.2f} {r['wall_s'] / r['floor_s']:7.1f} "
              f"{r['tf_wall_s']:7.1f} ({r['tf_threads']}) {r['wall_s'] / r['tf_wall_s']:5.2f} "
              f"{r['peak_rss_gb']:6.2f} ({r['tf_peak_rss_gb']:.2f})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
