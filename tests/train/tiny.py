"""A tiny training configuration on the shared label maps (seconds per step on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from synthsr_nipype.train.config import TrainConfig
from tests.paths import LABELS

MAPS = LABELS / "synthsr"
#: Generator section of the tiny configuration: one 5 mm axial T2-like channel, 32^3 crops.
TINY_GENERATOR: dict[str, Any] = {"tables": str(MAPS), "crop": [32, 32, 32],
                                  "channels": [{"suffix": "T2w", "contrast": "t2", "spacing": [1, 1, 5]}]}


def tiny_dict(out: Path, **overrides: Any) -> dict[str, Any]:
    config = {
        "label_maps": [str(MAPS / "brain1_labels.nii.gz"), str(MAPS / "brain2_labels.nii.gz")],
        "validation_label_maps": [str(MAPS / "brain2_labels.nii.gz")],
        "output": str(out),
        "generator": TINY_GENERATOR,
        "network": {"n_levels": 3, "base_features": 4},
        "steps": 4,
        "checkpoint_every": 2,
        "validate_every": 2,
        "validation_batches": 1,
        "threads": 1,
    }
    config.update(overrides)
    return config


def tiny_config(out: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig.from_dict(tiny_dict(out, **overrides))


def write_config(folder: Path, **overrides: Any) -> Path:
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(tiny_dict(folder / "run", **overrides)))
    return path
