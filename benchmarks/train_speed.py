"""Training speed on this machine: generator samples/s and the time of one training step (CPU, or CUDA).

    python benchmarks/train_speed.py                       # 128^3 generator, 24/5 and 16/4 nets at 96^3
    python benchmarks/train_speed.py --nets 16x4@64 16x4@96 24x5@128 --repeat 3 --json out.json

A net is FEATURESxLEVELS@CROP.  Each step is what ``synthsr-train`` does per step (sample a batch, forward,
L1, backward, Adam); the generator time is reported on its own too.  The first step of each size is a warm-up
and is not counted.  Prints the CPU model (``lscpu``), torch threads and the load average, since the machine
may be shared.

Each step is set against a floor, as ``benchmarks/run.py`` does for the inference: the step's forward +
backward FLOPs (3x the forward's: the backward computes the gradients of the activations and of the weights,
each a forward's worth) divided by the fp32 matrix-multiply rate measured in the same run with the same
threads (on CUDA: the device's fp32 rate, TF32 off).  ``ratio`` = network time (step minus generator) / floor.
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


def make_trainer(features: int, levels: int, crop: int, device: str, out: Path,
                 generator_device: str = "cpu") -> Trainer:
    config = TrainConfig.from_dict({
        "label_maps": [str(LABELS / f"brain{i}_labels.nii.gz") for i in (1, 2)],
        "generator": generator_config(crop), "output": str(out), "device": device,
        "network": {"n_levels": levels, "base_features": features}, "steps": 10**6,
        "generator_device": generator_device,
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


#: forward + backward FLOPs of a training step / the forward's (activation and weight gradients)
BACKWARD_FACTOR = 3.0


def matmul_rate(device: str, size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matrix-multiply rate (GFLOP/s) of ``device`` with torch's current threads."""
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        size = 8192
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def step_flops(trainer: Trainer, crop: int) -> float:
    from synthsr_nipype.inference.memory import network_flops

    return BACKWARD_FACTOR * network_flops((crop, crop, crop), trainer.spec)


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
    parser.add_argument("--generator-device", default="cpu", choices=("cpu", "device"),
                        help="where the generator runs (device: the training device, as synthsr-train's option)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "synthsr-train-speed"
    results = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "device": args.device, "generator_device": args.generator_device,
               "loadavg_before": os.getloadavg()[0], "nets": []}
    print(f"CPU: {results['cpu']}; torch {results['torch']}, {results['threads']} threads, device {args.device}, "
          f"load average {results['loadavg_before']:.2f}")
    results["matmul_gflops"] = matmul_rate(args.device)
    print(f"fp32 matrix multiply: {results['matmul_gflops']:.0f} GFLOP/s")
    gen = make_trainer(4, 2, args.generator_crop, args.device, out)
    results["generator_samples_per_s"] = time_generator(gen, args.repeat)
    results["generator_crop"] = args.generator_crop
    print(f"generator at {args.generator_crop}^3: {results['generator_samples_per_s']:.3f} samples/s "
          f"({1 / results['generator_samples_per_s']:.2f} s a sample)")
    for text in args.nets:
        features, levels, crop = parse_net(text)
        trainer = make_trainer(features, levels, crop, args.device, out, args.generator_device)
        gen_rate = time_generator(trainer, args.repeat)
        step = time_steps(trainer, args.repeat)
        flops = step_flops(trainer, crop)
        floor = flops / (results["matmul_gflops"] * 1e9)
        network_s = max(step - 1 / gen_rate, 0.0)
        row = {"net": text, "features": features, "levels": levels, "crop": crop, "step_s": step,
               "generator_s": 1 / gen_rate, "generator_share": (1 / gen_rate) / step, "steps_per_s": 1 / step,
               "steps_per_hour": 3600 / step, "step_gflop": flops / 1e9, "floor_s": floor,
               "ratio": network_s / floor}
        results["nets"].append(row)
        print(f"{text}: {step:.2f} s a step (generator {1 / gen_rate:.2f} s of it, {row['generator_share']:.0%}), "
              f"{3600 / step:.0f} steps an hour; network {network_s:.2f} s vs floor {floor:.2f} s "
              f"({flops / 1e9:.0f} GFLOP at {results['matmul_gflops']:.0f} GFLOP/s) = {row['ratio']:.2f}x")
    results["matmul_gflops_after"] = matmul_rate(args.device)
    results["loadavg_after"] = os.getloadavg()[0]
    print(f"load average after: {results['loadavg_after']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
