"""Checkpoint -> inference model file (safetensors with the architecture and the model card embedded)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..model.card import save_card_model, spec_from_dict
from ..model.spec import UNetSpec
from ..synth import GeneratorConfig, SynthGenerator
from .trainer import load_checkpoint
from .unet import TrainableUNet, export_state_dict, recalibrate_batch_norm

#: Resolution of the grid the network is trained and run on (the general pipeline resamples to it).
TRAINING_RESOLUTION_MM = 1.0


def build_card(payload: dict[str, Any]) -> dict[str, Any]:
    """The model card of a checkpoint (see :mod:`synthsr_nipype.model.card` for the keys a loader uses)."""
    config = payload["config"]
    generator = GeneratorConfig.from_dict(payload["generator"])
    last = GeneratorConfig.from_dict(payload["generator_now"])  # the stage in force at the last step
    channels = [{"suffix": str(c.suffix), **{k: _jsonable(v) for k, v in _fields(c).items() if k != "suffix"}}
                for c in generator.channels]
    return {
        "name": config.get("name", "synthsr-trained"),
        "channels": channels,
        "normalisation": "minmax",
        # residual models predict target - channel; no inference path adds the channel back yet
        "output": "synthsr-general" if generator.target.residual_channel is None else "synthsr-residual",
        "architecture": {**_spec(payload).as_dict(), "down_widths": payload["spec"]["down_widths"],
                         "up_widths": payload["spec"]["up_widths"]},
        "training": {
            "resolution_mm": TRAINING_RESOLUTION_MM,
            "crop": _jsonable(last.crop),
            "stages": _jsonable(config.get("stages", [])),
            "steps": int(payload["step"]),
            "seed": int(config["seed"]),
            "batch_size": int(config["batch_size"]),
            "loss": config["loss"],
            "learning_rate": float(config["learning_rate"]),
            "label_maps": payload["label_maps"],
            "best_validation_loss": (None if payload["best_step"] is None else float(payload["best_val_loss"])),
            "best_step": payload["best_step"],
            "initial_weights": config.get("initial_weights"),
        },
        "generator": _jsonable(generator.as_dict()),
        "package_version": __version__,
        "torch_version": torch.__version__,
    }


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str],
                      name: str | None = None, recalibration: SynthGenerator | None = None,
                      recalibration_batches: int = 0) -> Path:
    """Write the inference model of ``checkpoint`` to ``out`` (BatchNorm folded, card embedded).

    With ``recalibration_batches`` > 0, the BatchNorm statistics are first re-estimated with the weights
    frozen over that many samples of ``recalibration`` (a training generator; seeds of their own, see
    :func:`recalibration_seed`), and the card says so.
    """
    payload = load_checkpoint(checkpoint)
    spec = _spec(payload)
    net = TrainableUNet(spec)
    net.load_state_dict(payload["model"])
    card = build_card(payload)
    if name:
        card["name"] = name
    if recalibration_batches > 0:
        if recalibration is None:
            raise ValueError("BatchNorm recalibration needs a generator")
        seed = int(payload["config"]["seed"])
        batches = (recalibration.sample(1, seed=recalibration_seed(seed, i)).inputs
                   for i in range(recalibration_batches))
        used = recalibrate_batch_norm(net, batches)
        card["training"]["batch_norm_recalibration"] = {
            "samples": used, "seeds": f"SeedSequence([{seed}, 1, i]) for i < {used}",
            "crop": _jsonable(recalibration.config.crop)}
    return save_card_model(out, spec, export_state_dict(net.eval()), card)


def recalibration_seed(seed: int, index: int) -> int:
    """Seeds of the BatchNorm recalibration samples: a stream apart from every training step's."""
    return int(np.random.SeedSequence([int(seed), 1, int(index)]).generate_state(1, dtype=np.uint32)[0])


def _spec(payload: dict[str, Any]) -> UNetSpec:
    return spec_from_dict(payload["spec"])


def _fields(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return dict(vars(obj))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(_fields(value))
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

