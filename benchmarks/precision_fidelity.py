"""Would reduced precision keep the fidelity criteria? bf16 and TF32 against the TensorFlow reference.

The GPU path offers ``--precision tf32|bf16`` (see ``inference.predict``); the issue allows them only where
the uint8 output still meets the fidelity criteria of the inference issue (fixtures README: >= 99.9 % of
voxels identical, none more than 1 level apart). Both number formats can be measured without a GPU:

* ``bf16``: the pipeline's own bf16 path on the CPU (activations and weights in bfloat16, convolutions
  accumulating in fp32, as cuDNN does);
* ``tf32`` (emulated): every convolution's input and weights rounded to TF32 (10-bit mantissa, round to
  nearest even) before an fp32 convolution, which is what Ampere and later tensor cores do with TF32 on.

Each full-network devset case runs with ``fp32`` (the default), ``bf16`` and ``tf32``; the table gives the
share of identical uint8 voxels, the share within one level, the largest difference and the network time.

    python benchmarks/precision_fidelity.py [--flair] [--json benchmarks/precision.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.run import DEVSET, devset_cases, run_options  # noqa: E402

SAME_PERCENT, MAX_LEVELS = 99.9, 1


def round_to_tf32(t: torch.Tensor) -> torch.Tensor:
    """fp32 -> the nearest TF32 value (1 sign, 8 exponent, 10 mantissa bits), ties to even, kept in fp32."""
    bits = t.contiguous().view(torch.int32)
    lsb = (bits >> 13) & 1
    rounded = (bits + 0x0FFF + lsb) & ~0x1FFF
    return rounded.view(torch.float32)


@contextlib.contextmanager
def tf32_convolutions():
    """Route every network convolution through TF32-rounded operands."""
    from synthsr_nipype.model import unet

    original = unet.conv3d

    def conv3d(x, weight, bias, padding=None):
        return original(round_to_tf32(x), round_to_tf32(weight), bias, padding=padding)

    unet.conv3d = conv3d
    try:
        yield
    finally:
        unet.conv3d = original


def cases(include_flair: bool) -> list[dict]:
    return [c for c in devset_cases().values() if c["model"].endswith("full_weights.h5") and c["kind"] == "general"
            and (include_flair or c["name"] != "flair_whole_full")]


def measure(case: dict, precision: str) -> dict:
    from synthsr_nipype.inference import run

    reference = np.asanyarray(nib.load(DEVSET / "expected" / case["name"] / "output.nii.gz").dataobj)
    emulate = precision == "tf32"
    start = time.perf_counter()
    with tf32_convolutions() if emulate else contextlib.nullcontext():
        image = run(str(DEVSET / case["inputs"]["image"]), model=str(DEVSET / case["model"]), **run_options(case),
                    device="cpu", precision="fp32" if emulate else precision)
    seconds = time.perf_counter() - start
    diff = np.abs(np.asanyarray(image.dataobj).astype(np.int16) - reference.astype(np.int16))
    same = 100.0 * float(np.mean(diff == 0))
    return {"case": case["name"], "precision": precision + (" (emulated)" if emulate else ""),
            "identical_percent": round(same, 4), "within_1_percent": round(100.0 * float(np.mean(diff <= 1)), 4),
            "max_levels": int(diff.max()), "seconds": round(seconds, 2),
            "meets_criteria": bool(same >= SAME_PERCENT and diff.max() <= MAX_LEVELS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flair", action="store_true", help="include the whole FLAIR (minutes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'case':<18} {'precision':<16} {'identical %':>11} {'<=1 level %':>11} {'max':>4} {'s':>6}  criteria")
    for case in cases(args.flair):
        for precision in ("fp32", "bf16", "tf32"):
            row = measure(case, precision)
            rows.append(row)
            print(f"{row['case']:<18} {row['precision']:<16} {row['identical_percent']:>11.3f} "
                  f"{row['within_1_percent']:>11.3f} {row['max_levels']:>4} {row['seconds']:>6.1f}  "
                  f"{'met' if row['meets_criteria'] else 'NOT met'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "torch": torch.__version__,
                                               "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
