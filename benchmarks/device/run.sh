#!/usr/bin/env bash
# The prepared device run (issue 23), one command within 9 minutes, everything written to $OUT:
#   1. CUDA fidelity: every small-model TF-fixture case through the command line on the GPU
#      (benchmarks/device/fidelity.py; the criteria of tests/inference/test_fidelity.py)
#   2. GPU inference benchmark: whole FLAIR, fp32 / tf32 / bf16 and the out-of-memory tiles, peak memory
#      (benchmarks/run.py --gpu, with the published architecture at random weights: the 53 MB fixture model
#      does not travel), and the training step against its floor (benchmarks/train_speed.py --device cuda)
#   3. training: train/configs/synthsr.yaml on the GPU, bf16, the generator on the GPU too, for the time left
#      (--time-budget), then the export; the model comes back in 15 MiB parts (files back are at most 16 MiB):
#      cat model.safetensors.part-* > model.safetensors
#
#   bash benchmarks/device/prepare.sh --wheels        # here, first: the carried data and wheels
#   run(command="bash benchmarks/device/run.sh", carry=["benchmarks/device/carry", ".whl"], timeout_s=600)
#   bash benchmarks/device/run.sh --rehearse          # the same steps on the CPU in about a minute (CI runs it)
#
# Files in $OUT (8 at most come back): run.log, fidelity.json, inference.json, train_speed.json, log.csv,
# card.json, model.safetensors.part-aa, -ab, ... (the rehearsal's model is one part).
set -uo pipefail
cd "$(dirname "$0")/../.."
REHEARSE=0
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
OUT=${OUT:-$(mktemp -d -t synthsr-device-XXXXXX)}
mkdir -p "$OUT"
START=$(date +%s)
LIMIT=${DEVICE_RUN_SECONDS:-540}          # 9 minutes for the whole run
EXPORT_MARGIN=${DEVICE_EXPORT_SECONDS:-75}  # kept for the export (BatchNorm recalibration) and the copy
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
exec > >(tee "$OUT/run.log") 2>&1
# ../shared does not travel: the carried copy stands in for it
if [ ! -d ../shared ] && [ -d benchmarks/device/carry/shared ]; then
  ln -s "$PWD/benchmarks/device/carry/shared" ../shared
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
elapsed() { echo $(( $(date +%s) - START )); }
status=0
if [ "$REHEARSE" = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi
echo "== device run ($([ "$REHEARSE" = 1 ] && echo rehearsal on the CPU || echo GPU)), OUT=$OUT"
$PY -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
if [ "$REHEARSE" = 0 ] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "ERROR: no CUDA device; use --rehearse on a machine without one"; exit 2
fi

echo "== 1. fidelity on $DEVICE against the TF fixtures ($(elapsed) s)"
if [ "$REHEARSE" = 1 ]; then CASES=(--cases general hyperfine); else CASES=(); fi
$PY benchmarks/device/fidelity.py --device "$DEVICE" "${CASES[@]}" --json "$OUT/fidelity.json" || status=1

echo "== 2. inference and training-step benchmarks ($(elapsed) s)"
WORK=$(mktemp -d -t synthsr-device-work-XXXXXX)
# the published architecture (5 levels x 24 features) at seeded random weights: timings, memory, precisions
$PY - "$WORK/published.safetensors" <<'PY' || status=1
import sys, torch
from synthsr_nipype.model import published_spec
from synthsr_nipype.model.card import save_card_model
from synthsr_nipype.train.unet import TrainableUNet, export_state_dict
torch.manual_seed(0)
spec = published_spec(24, in_channels=1)
card = {"name": "published-random", "channels": [{"suffix": "any"}], "normalisation": "minmax",
        "output": "synthsr-general"}
save_card_model(sys.argv[1], spec, export_state_dict(TrainableUNet(spec).eval()), card)
PY
if [ "$REHEARSE" = 1 ]; then
  $PY benchmarks/run.py --configs crop_tiny_t1 --model "$WORK/published.safetensors" --json "$OUT/inference.json" \
    --keep "$WORK/bench" || status=1
  $PY benchmarks/train_speed.py --nets 4x3@32 --generator-crop 32 --repeat 1 --device cpu \
    --json "$OUT/train_speed.json" || status=1
else
  $PY benchmarks/run.py --gpu --model "$WORK/published.safetensors" --json "$OUT/inference.json" \
    --keep "$WORK/bench" || status=1
  $PY benchmarks/train_speed.py --nets 24x5@160 24x5@128 --repeat 3 --device cuda --generator-device device \
    --json "$OUT/train_speed.json" || status=1
fi

echo "== 3. training ($(elapsed) s)"
LEFT=$(( LIMIT - $(elapsed) - EXPORT_MARGIN ))
if [ "$REHEARSE" = 1 ]; then
  TRAIN=(--steps 2 --n-levels 3 --base-features 4 --crop 32 32 32 --device cpu --threads 2
         --label-maps ../shared/data/labels/synthseg/training_seg_01.nii.gz
         --validation-label-maps ../shared/data/labels/synthsr/brain5_labels.nii.gz
         --validate-every 2 --validation-batches 1 --checkpoint-every 2 --bn-recalibration 1)
  LEFT=60   # the two steps end it long before
else
  TRAIN=(--device cuda --bf16 --generator-device device)
fi
if [ "$LEFT" -lt 30 ]; then
  echo "ERROR: only $LEFT s left for training"; status=1
else
  MINUTES=$($PY -c "print($LEFT / 60)")
  $PY -m synthsr_nipype.cli.train synthsr_nipype/train/configs/synthsr.yaml --output "$WORK/train" \
    --time-budget "$MINUTES" --quiet "${TRAIN[@]}" || status=1
  cp "$WORK/train/log.csv" "$OUT/log.csv" 2>/dev/null || status=1
  if [ -f "$WORK/train/model.safetensors" ]; then
    $PY -c "import json, sys; from synthsr_nipype.model.card import read_card
print(json.dumps(read_card(sys.argv[1])[1].data, indent=1))" "$WORK/train/model.safetensors" > "$OUT/card.json"
    split -b 15M "$WORK/train/model.safetensors" "$OUT/model.safetensors.part-"
  else
    echo "ERROR: no exported model"; status=1
  fi
fi
rm -rf "$WORK"
echo "== done in $(elapsed) s, status $status; files: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $status
