"""``synthsr-train CONFIG.yaml``: train a SynthSR U-Net on synthetic images from label maps, then export it.

Every key of the config is also a flag (``--steps 500``, ``--base-features 16``; the generator section through
``--crop X Y Z`` or ``--set generator.KEY=YAML``), and a flag wins over the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import reports_errors
from ..train.config import NetworkConfig, TrainConfig, load_config

if TYPE_CHECKING:
    from ..train.trainer import StepResult

EXIT_CODES = "exit codes: 0 success; 1 training failed (e.g. a non-finite loss); 2 bad config, flag or checkpoint; " \
             "130 interrupted (a checkpoint of the last step is written first)"
_LIST_FIELDS = {"label_maps", "validation_label_maps"}
_SKIP_FIELDS = {"generator", "network", "stages"}  # mappings: --set KEY=YAML


FIELD_HELP = {
    "label_maps": "label maps (files, or folders of .nii/.nii.gz) to synthesise training images from",
    "validation_label_maps": "held-out label maps for validation (never trained on)",
    "output": "run folder: checkpoints/, log.csv, model.safetensors",
    "loss": "l1 or l2",
    "learning_rate": "Adam learning rate",
    "steps": "total optimiser steps",
    "batch_size": "samples per step",
    "device": "auto (CUDA if present), cpu, cuda, cuda:N",
    "seed": "network initialisation and the batch of every step (seed, step)",
    "bf16": "bfloat16 autocast on CUDA (ignored on the CPU)",
    "threads": "CPU threads (default torch's choice)",
    "checkpoint_every": "write a checkpoint every N steps",
    "validate_every": "validation loss every N steps",
    "validation_batches": "batches per validation (fixed seeds)",
    "validation_seed": "seed of the first validation batch",
    "name": "model name written to the card",
    "n_levels": "U-Net levels",
    "base_features": "features of the first level (doubling per level)",
    "convs_per_level": "convolutions per level",
    "kernel_size": "convolution kernel size",
    "batch_norm": "BatchNorm after each level",
    "generator_device": "where the generator's augmentation runs: cpu, or device (the training device)",
    "initial_weights": "start from this exported model (same network) instead of random weights",
    "initial_batches": "training samples that measure the initial weights' BatchNorm statistics",
    "bn_recalibration": "at export, re-estimate BatchNorm statistics over N training samples (0: off)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field_flags(parser: argparse.ArgumentParser, fields, prefix: str = "") -> None:
    for f in fields:
        if f.name in _SKIP_FIELDS:
            continue
        dest = f"cfg__{prefix}{f.name}"
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{FIELD_HELP.get(f.name, '')} (config: {prefix}{f.name}; default {default})"
        if f.name in _LIST_FIELDS:
            parser.add_argument(_flag(f.name), dest=dest, nargs="+", default=None, metavar="PATH",
                                help=f"{FIELD_HELP.get(f.name, '')} (config: {f.name})")
        elif isinstance(default, bool):
            parser.add_argument(_flag(f.name), dest=dest, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            kind = float if isinstance(default, float) else int if isinstance(default, int) else str
            if f.name == "threads":
                kind = int
            parser.add_argument(_flag(f.name), dest=dest, type=kind, default=None, metavar=f.name.upper(),
                                help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthsr-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES)
    parser.add_argument("config", help="training configuration (YAML); see docs/training.md")
    _add_field_flags(parser, dataclasses.fields(TrainConfig))
    _add_field_flags(parser, dataclasses.fields(NetworkConfig), prefix="network.")
    parser.add_argument("--crop", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="(config: generator.crop) training patch shape")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=YAML",
                        help="set any config key, dotted, value in YAML (e.g. --set generator.channels='[...]')")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="stop after MINUTES of training: the step under way finishes, then a checkpoint "
                             "and the export are written as at the last step")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                        help="continue from CHECKPOINT (default: the latest one in the output folder)")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="model file to write at the end (default OUTPUT/model.safetensors; the checkpoint "
                             "with the best validation loss also goes to OUTPUT/best.safetensors)")
    parser.add_argument("--export-only", action="store_true",
                        help="do not train: export the checkpoint given by --resume (default the latest)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg__") and value is not None:
            overrides[key[len("cfg__"):]] = value
    if args.crop is not None:
        overrides["generator.crop"] = list(args.crop)
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"synthsr-train: error: --set needs KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(text)
    return overrides


def print_validation(result: StepResult) -> None:
    """One line per validation: its loss and, on T1-contrast samples, the network against the linear baseline."""
    if result.val_loss is None:
        return
    line = f"step {result.step}: validation loss {result.val_loss:.4f}"
    if result.val_t1 is not None:
        ours, linear = result.val_t1
        line += (f"; T1-contrast inputs: {ours:.4f}, linear rescaling of the input {linear:.4f} "
                 f"({'better' if ours < linear else 'worse'} than the linear baseline)")
    print(line, file=sys.stderr, flush=True)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.time_budget is not None and not args.time_budget > 0:
        raise SystemExit("synthsr-train: error: --time-budget needs a positive number of minutes")
    config = load_config(args.config, overrides_from_args(args))
    from ..train.export import export_checkpoint
    from ..train.trainer import Trainer, load_checkpoint

    trainer = Trainer(config)
    checkpoint = None
    if args.resume is not None:
        checkpoint = trainer.latest_checkpoint() if args.resume == "latest" else Path(args.resume)
        if checkpoint is None:
            print(f"ERROR: --resume: no checkpoint in {trainer.run_dir / 'checkpoints'}", file=sys.stderr)
            return 2
        trainer.load_checkpoint(checkpoint)
        print(f"resuming from {checkpoint} (step {trainer.state.step})", file=sys.stderr)
    if not args.export_only:
        print(f"training {len(trainer.train_maps)} label map(s), validating on {len(trainer.val_maps)}; "
              f"network {trainer.spec.as_dict()}; device {trainer.device}; run folder {trainer.run_dir}",
              file=sys.stderr)
        try:
            budget = None if args.time_budget is None else 60.0 * args.time_budget
            trainer.fit(progress=not args.quiet, time_budget_s=budget, on_step=print_validation)
            if trainer.state.step < config.steps:
                print(f"time budget of {args.time_budget:g} min spent: stopped at step {trainer.state.step} "
                      f"of {config.steps}", file=sys.stderr)
        except KeyboardInterrupt:
            path = trainer.save_checkpoint()
            print(f"interrupted: step {trainer.state.step} saved to {path}; continue with --resume",
                  file=sys.stderr)
            return 130
        except FloatingPointError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
    source = checkpoint if args.export_only and checkpoint is not None else trainer.latest_checkpoint()
    if source is None:
        print(f"ERROR: no checkpoint to export in {trainer.run_dir / 'checkpoints'}", file=sys.stderr)
        return 2
    out = Path(args.export) if args.export else trainer.run_dir / "model.safetensors"
    def export(checkpoint: Path, target: Path) -> Path:
        step = int(load_checkpoint(checkpoint)["step"])
        return export_checkpoint(checkpoint, target, name=config.name,
                                 recalibration=trainer.generator_at(max(step - 1, 0)),
                                 recalibration_batches=config.bn_recalibration)

    print(f"model: {export(source, out)} (from {source.name})")
    best = trainer.run_dir / "checkpoints" / "best.pt"
    if best.is_file() and not args.export:
        print(f"best validation: {export(best, trainer.run_dir / 'best.safetensors')}")
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
