"""Training configuration: a YAML file whose every key can be overridden from the command line.

Relative paths (label maps, output folder) are taken from the current directory, so a config committed in the
repository names the shared data as ``../shared/...`` and is run from the repository root.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import SynthSRError
from ..model.spec import UNetSpec, published_spec

LOSSES = ("l1", "l2")


class ConfigError(SynthSRError):
    """A training configuration that cannot be used (exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class NetworkConfig:
    """U-Net size; the defaults are the published SynthSR architecture."""

    n_levels: int = 5
    base_features: int = 24
    convs_per_level: int = 2
    kernel_size: int = 3
    batch_norm: bool = True

    def spec(self, in_channels: int) -> UNetSpec:
        return published_spec(self.base_features, in_channels=in_channels, n_levels=self.n_levels,
                              convs_per_level=self.convs_per_level, kernel_size=self.kernel_size,
                              batch_norm=self.batch_norm)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on.  ``generator`` is the :class:`synth.GeneratorConfig` section."""

    label_maps: tuple[str, ...]
    generator: dict[str, Any]
    output: str = "synthsr-train-run"
    validation_label_maps: tuple[str, ...] = ()
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: str = "l1"
    learning_rate: float = 1e-4
    steps: int = 1000
    batch_size: int = 1
    device: str = "auto"
    seed: int = 0
    bf16: bool = True  # autocast to bfloat16; CUDA only (ignored elsewhere)
    #: where the generator's augmentation runs: "cpu", or "device" (the training device, e.g. the GPU)
    generator_device: str = "cpu"
    threads: int | None = None
    checkpoint_every: int = 100
    validate_every: int = 100
    validation_batches: int = 4
    validation_seed: int = 1_000_000
    name: str = "synthsr-trained"
    #: start from this exported model (same architecture) instead of random weights, as the reference's
    #: ``load_model_file``; its BatchNorm statistics are re-measured over ``initial_batches`` training samples
    initial_weights: str | None = None
    initial_batches: int = 8
    #: at export, re-estimate the BatchNorm statistics over this many training samples (0: keep the running ones)
    bn_recalibration: int = 0
    #: from a step on, overrides of the generator section and/or the learning rate, e.g.
    #: ``[{from_step: 1000, generator: {crop: 96}, learning_rate: 1e-4}]`` (smaller crops early, a lower rate
    #: late); validation always uses the base ``generator`` section
    stages: tuple[dict[str, Any], ...] = ()

    def learning_rate_at(self, step: int) -> float:
        """The learning rate in force at ``step`` (0-based)."""
        rate = float(self.learning_rate)
        for stage in sorted(self.stages, key=lambda st: int(st["from_step"])):
            if step >= int(stage["from_step"]) and "learning_rate" in stage:
                rate = float(stage["learning_rate"])
        return rate

    def generator_at(self, step: int) -> dict[str, Any]:
        """The generator section in force at ``step`` (0-based): the base with every stage begun so far."""
        merged = dict(self.generator)
        for stage in sorted(self.stages, key=lambda st: int(st["from_step"])):
            if step >= int(stage["from_step"]):
                merged = _merged(merged, stage.get("generator") or {})
        return merged

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}")
        for key in ("label_maps", "generator"):
            if key not in data:
                raise ConfigError(f"{source}: '{key}' is required")
        network = data.get("network") or {}
        if not isinstance(network, dict):
            raise ConfigError(f"{source}: 'network' must be a mapping")
        net_known = {f.name for f in dataclasses.fields(NetworkConfig)}
        if set(network) - net_known:
            raise ConfigError(f"{source}: unknown network option(s) {', '.join(sorted(set(network) - net_known))}")
        data["network"] = NetworkConfig(**network)
        for key in ("label_maps", "validation_label_maps"):
            value = data.get(key, ())
            data[key] = tuple(str(v) for v in ([value] if isinstance(value, (str, os.PathLike)) else value or ()))
        if not isinstance(data["generator"], dict):
            raise ConfigError(f"{source}: 'generator' must be a mapping")
        stages = data.get("stages") or ()
        if not isinstance(stages, (list, tuple)) or not all(
                isinstance(st, dict) and set(st) <= {"from_step", "generator", "learning_rate"}
                and isinstance(st.get("from_step"), int) and isinstance(st.get("generator", {}), dict)
                and isinstance(st.get("learning_rate", 1.0), (int, float)) and st.get("learning_rate", 1.0) > 0
                for st in stages):
            raise ConfigError(f"{source}: 'stages' must be a list of {{from_step: N, generator: {{...}}, "
                              "learning_rate: R}} (generator and learning_rate optional)")
        data["stages"] = tuple(dict(st) for st in stages)
        try:
            config = cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        config.check(source)
        return config

    def check(self, source: str = "config") -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"{source}: loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        for key in ("steps", "batch_size", "checkpoint_every", "validate_every"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{source}: {key} must be at least 1")
        if self.generator_device not in ("cpu", "device"):
            raise ConfigError(f"{source}: generator_device must be cpu or device, not {self.generator_device!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"{source}: learning_rate must be positive")
        if self.network.n_levels < 1 or self.network.base_features < 1:
            raise ConfigError(f"{source}: network n_levels and base_features must be at least 1")


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read ``path`` (YAML) and apply ``overrides`` (dotted keys, e.g. ``network.base_features``)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value, str(path))
    return TrainConfig.from_dict(data, str(path))


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str = "config") -> None:
    """``data['a']['b'] = value`` for ``key = 'a.b'`` (creating mappings on the way)."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: cannot set {key}: '{part}' is not a mapping")
        node = child
    node[parts[-1]] = value


def expand_label_maps(entries: tuple[str, ...], source: str = "config") -> list[Path]:
    """Files as given; a folder stands for its ``*.nii`` / ``*.nii.gz`` files, sorted."""
    paths: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".nii", ".nii.gz")))
            if not found:
                raise ConfigError(f"{path}: label-map folder holds no .nii/.nii.gz file")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise ConfigError(f"{path}: label map does not exist ({source})")
    return paths


def split_label_maps(config: TrainConfig) -> tuple[list[Path], list[Path]]:
    """(training, validation) label maps; a map listed for validation is never trained on."""
    validation = expand_label_maps(config.validation_label_maps, "validation_label_maps")
    held_out = {p.resolve() for p in validation}
    training = [p for p in expand_label_maps(config.label_maps, "label_maps") if p.resolve() not in held_out]
    if not training:
        raise ConfigError("no label maps left for training once the validation maps are held out")
    return training, validation
