"""Training speed on this machine: generator samples/s and the time of one training step (CPU, or CUDA).

    python benchmarks/train_speed.py                       # 128^3 generator, 24/5 and 16/4 nets at 96^3
    python benchmarks/train_speed.py --nets 16x4@64 16x4@96 24x5@128 --repeat 3 --json out.json

A net is FEATURESxLEVELS@CROP.  Each step is what ``synthsr-train`` does per step (sample a batch, forward,
L1, backward, Adam); the generator time is reported on its own too.  The first step of each size is a warm-up
and is not counted.  Prints the CPU model (``lscpu``), torch threads and the load average, since the machine
may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthsr_nipype.train.config import TrainConfig  # noqa: E402
from synthsr_nipype.train.trainer import Trainer  # noqa: E402

LABELS = REPO.parent / "shared" / "data" / "labels" / "synthsr"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def generator_config(crop: int) -> dict:
    """The lite recipe's generator: any contrast, random acquisition (the hardest case for the generator)."""
    return {"tables": str(LABELS), "crop": [crop] * 3, "channels": [{"suffix": "T1w"}]}


def make_trainer(features: int, levels: int, crop: int, device: str, out: Path) -> Trainer:
    config = TrainConfig.from_dict({
        "label_maps": [str(LABELS / f"brain{i}_labels.nii.gz") for i in (1, 2)],
        "generator": generator_config(crop), "output": str(out), "device": device,
        "network": {"n_levels": levels, "base_features": features}, "steps": 10**6,
    })
    return Trainer(config)


def time_generator(trainer: Trainer, repeat: int) -> float:
    trainer.generator.sample(1, seed=0)
    start = time.perf_counter()
    for i in range(repeat):
        trainer.generator.sample(1, seed=i + 1)
    return repeat / (time.perf_counter() - start)


def time_steps(trainer: Trainer, repeat: int) -> float:
    trainer.train_step()  # warm-up: allocator, oneDNN primitive cache
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def parse_net(text: str) -> tuple[int, int, int]:
    size, crop = text.split("@")
    features, levels = size.split("x")
    return int(features), int(levels), int(crop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator-crop", type=int, default=128)
    parser.add_argument("--nets", nargs="*", default=["24x5@96", "16x4@96"], help="FEATURESxLEVELS@CROP")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "synthsr-train-speed"
    results = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "device": args.device, "loadavg_before": os.getloadavg()[0], "nets": []}
    print(f"CPU: {results['cpu']}; torch {results['torch']}, {results['threads']} threads, device {args.device}, "
          f"load average {results['loadavg_before']:.2f}")
    gen = make_trainer(4, 2, args.generator_crop, args.device, out)
    results["generator_samples_per_s"] = time_generator(gen, args.repeat)
    results["generator_crop"] = args.generator_crop
    print(f"generator at {args.generator_crop}^3: {results['generator_samples_per_s']:.3f} samples/s "
          f"({1 / results['generator_samples_per_s']:.2f} s a sample)")
    for text in args.nets:
        features, levels, crop = parse_net(text)
        trainer = make_trainer(features, levels, crop, args.device, out)
        gen_rate = time_generator(trainer, args.repeat)
        step = time_steps(trainer, args.repeat)
        row = {"net": text, "features": features, "levels": levels, "crop": crop, "step_s": step,
               "generator_s": 1 / gen_rate, "steps_per_hour": 3600 / step}
        results["nets"].append(row)
        print(f"{text}: {step:.2f} s a step (generator {1 / gen_rate:.2f} s of it), {3600 / step:.0f} steps an hour")
    results["loadavg_after"] = os.getloadavg()[0]
    print(f"load average after: {results['loadavg_after']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
