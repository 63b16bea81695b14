"""Trained models on the trainer's own validation samples: L1 and Pearson r inside the labels.

The samples are those ``synthsr-train`` validates on (the config's held-out label maps, its generator, seeds
``validation_seed + i``): inputs of any contrast, and inputs drawn from the target's contrast prior (T1 in,
T1 out).  Beside each model (exported weights, eval mode), the same figures for the input itself and for its
least-squares linear rescaling onto the target, the baseline the trainer prints (``val_t1_linear``).

    python benchmarks/synthetic_validation.py synthsr_nipype/train/configs/lite-candidate.yaml \
        --models lite run/model.safetensors --json benchmarks/synthetic_validation_lite.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthsr_nipype.model import load_model  # noqa: E402
from synthsr_nipype.train.config import load_config  # noqa: E402
from synthsr_nipype.train.trainer import Trainer, linear_fit  # noqa: E402


def figures(prediction: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(L1 over the crop, Pearson r inside the labels) of one sample."""
    inside = (labels > 0).reshape(-1)
    x, y = prediction.reshape(-1)[inside].double(), target.reshape(-1)[inside].double()
    return float((prediction - target).abs().mean()), float(torch.corrcoef(torch.stack([x, y]))[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the training configuration whose validation samples to use")
    parser.add_argument("--models", nargs="+", required=True, help="model names or exported .safetensors files")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.config, {"device": "cpu"})
    trainer = Trainer(config)  # builds the validation generators; writes nothing
    nets = {name: load_model(name, device="cpu").net.eval() for name in args.models}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for kind, generator in (("any contrast", trainer.val_generator), ("T1-contrast input", trainer.t1_generator)):
        if generator is None:  # no validation maps, or a uniform target (no T1-contrast samples)
            continue
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in [*nets, "input", "linear"]}
        for i in range(config.validation_batches):
            batch = generator.sample(config.batch_size, seed=config.validation_seed + i)
            with torch.inference_mode():
                outputs = {name: net(batch.inputs) for name, net in nets.items()}
            outputs["input"] = batch.inputs[:, :1]
            outputs["linear"] = linear_fit(batch.inputs, batch.target)
            for name, out in outputs.items():
                for j in range(out.shape[0]):
                    rows[name].append(figures(out[j], batch.target[j], batch.labels[j]))
        results[kind] = {name: {"l1": float(np.mean([r[0] for r in v])), "r": float(np.mean([r[1] for r in v]))}
                         for name, v in rows.items()}
        for name, v in results[kind].items():
            print(f"{kind:18s} {name:40s} L1 {v['l1']:.4f}  r {v['r']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "models": args.models,
                                         "samples": config.validation_batches * config.batch_size,
                                         "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
