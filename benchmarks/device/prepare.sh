#!/usr/bin/env bash
# Copy what benchmarks/device/run.sh needs from ../shared into benchmarks/device/carry/shared (ignored by git;
# `carry` it: ../shared does not travel to a device machine), and, with --wheels, download the wheels of the
# packages the device lacks into .whl/ (see /work/.library/device/README.md: torch, h5py, safetensors, scipy
# and PyYAML are there).  Run here, from the repository root, before the device call:
#     bash benchmarks/device/prepare.sh [--wheels]
# then  run(command="bash benchmarks/device/run.sh", carry=["benchmarks/device/carry", ".whl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=../shared
DST=benchmarks/device/carry/shared
rm -rf "$DST"
mkdir -p "$DST/data/labels" "$DST/data/real/py_synthsr" "$DST/fixtures/tf-reference/devset"
# the label maps and tables of train/configs/synthsr.yaml (head maps + brain maps), ~11 MB
cp -r "$SRC/data/labels/synthseg" "$SRC/data/labels/synthsr" "$DST/data/labels/"
# the whole-FLAIR benchmark input
cp "$SRC/data/real/py_synthsr/FLAIR.nii.gz" "$DST/data/real/py_synthsr/"
# the TF fixtures of the small models (the 53 MB full model does not fit in what travels): inputs, models,
# the expected written outputs and headers of every case that uses a small model
DEV="$SRC/fixtures/tf-reference/devset"
OUTDEV="$DST/fixtures/tf-reference/devset"
python3 - "$DEV" "$OUTDEV" <<'PY'
import json, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
cases = [c for c in json.loads((src / "manifest.json").read_text()) if "full_weights" not in c["model"]]
(dst / "manifest.json").write_text(json.dumps(cases, indent=1))
for case in cases:
    for rel in [case["model"], *case["inputs"].values(), f"expected/{case['name']}/output.nii.gz",
                f"expected/{case['name']}/header.json"]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
shutil.copy2(src / "inputs" / "flair_whole.nii.gz", dst / "inputs" / "flair_whole.nii.gz")
print(f"{len(cases)} fixture cases")
PY
du -sh "$DST"
if [ "${1:-}" = "--wheels" ]; then
  mkdir -p .whl
  for pkg in nibabel==5.3.2 platformdirs==4.3.6 lazy_loader==0.6; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$pkg"
  done
  du -sh .whl
fi
