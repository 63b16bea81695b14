"""The written output of every TF-fixture case with a small model, through the command line on ``--device``,
against the TensorFlow reference (the criteria of tests/inference/test_fidelity.py: general cases >= 99.9 %
identical uint8 voxels and at most 1 level apart; Hyperfine cases relative L2 <= 1e-4).

    python benchmarks/device/fidelity.py --device cuda --json fidelity.json

Exit code 1 when a case misses its criterion, so that the device run says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DEVSET = REPO.parent / "shared" / "fixtures" / "tf-reference" / "devset"
UINT8_SAME = 99.9  # percent
HYPERFINE_REL_L2 = 1e-4


def run_case(case: dict, out: Path, device: str) -> int:
    from synthsr_nipype.cli import hyperfine as hyperfine_cli
    from synthsr_nipype.cli import synthsr as synthsr_cli

    if case["kind"] == "general":
        return synthsr_cli.main(["--i", str(DEVSET / case["inputs"]["image"]), "--o", str(out), "--model",
                                 str(DEVSET / case["model"]), "--device", device, *case["flags"]])
    return hyperfine_cli.main(["--t1", str(DEVSET / case["inputs"]["t1"]), "--t2", str(DEVSET / case["inputs"]["t2"]),
                               "--o", str(out), "--model", str(DEVSET / case["model"]), "--device", device])


def compare(case: dict, out: Path) -> dict:
    mine = np.asanyarray(nib.load(out).dataobj)
    reference = np.asanyarray(nib.load(DEVSET / "expected" / case["name"] / "output.nii.gz").dataobj)
    if mine.shape != reference.shape:
        return {"ok": False, "problem": f"shape {mine.shape} != {reference.shape}"}
    if case["kind"] == "general":
        a, b = mine.astype(np.int16), reference.astype(np.int16)
        same, worst = 100.0 * float(np.mean(a == b)), int(np.abs(a - b).max())
        return {"ok": same >= UINT8_SAME and worst <= 1, "identical_percent": same, "max_levels": worst}
    a, b = mine.astype(np.float64), reference.astype(np.float64)
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return {"ok": rel <= HYPERFINE_REL_L2, "rel_l2": rel}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", nargs="*", default=None, help="case names (default: every small-model case)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cases = [c for c in json.loads((DEVSET / "manifest.json").read_text())
             if (DEVSET / c["model"]).is_file() and (DEVSET / "expected" / c["name"] / "output.nii.gz").is_file()
             and (args.cases is None or c["name"] in args.cases)]
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for case in cases:
            out = Path(work) / f"{case['name']}.nii.gz"
            with contextlib.redirect_stderr(io.StringIO()):
                code = run_case(case, out, args.device)
            results[case["name"]] = compare(case, out) if code == 0 else {"ok": False, "problem": f"exit {code}"}
            print(f"{case['name']:20s} {json.dumps(results[case['name']])}", flush=True)
    failed = [name for name, r in results.items() if not r["ok"]]
    print(f"{len(results) - len(failed)}/{len(results)} cases meet the TF-fixture criteria on {args.device}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "cases": results}, indent=1) + "\n")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
