"""Models trained by this package: one safetensors file holding the weights, the architecture and the model card.

The card is JSON in the safetensors metadata under ``synthsr_card`` (the architecture under ``spec``, the same
encoding as the converted-weight cache), so a model is one file that cannot lose its card.  ``synthsr-models
card NAME|PATH`` prints it.  Keys a loader relies on:

* ``channels``: one object per input channel, in order, each with the BIDS ``suffix`` it expects (``T1w``,
  ``T2w``, ``FLAIR``, ...); one channel means "any contrast" for the general pipeline;
* ``normalisation``: ``minmax`` (each channel resampled to 1 mm and scaled to [0, 1], as ``prepare_general``);
* ``output``: ``synthsr-general`` (the network predicts T1 / 510; the pipeline writes ``clip(255 x, 0, 128) * 2``
  as uint8, as ``mri_synthsr``).

Everything else (training resolution, seed, steps, label-map hashes, generator configuration, package version)
is provenance for people.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_target
from ..errors import ModelError
from .spec import UNetSpec

CARD_KEY = "synthsr_card"
SPEC_KEY = "spec"
CARD_FORMAT = 1
NORMALISATIONS = ("minmax",)
OUTPUTS = ("synthsr-general", "synthsr-residual")
RUNNABLE_OUTPUTS = ("synthsr-general",)  # residual models need the input channel added back: not implemented


def spec_to_json(spec: UNetSpec) -> str:
    return json.dumps({**spec.__dict__})


def spec_from_json(text: str) -> UNetSpec:
    return spec_from_dict(json.loads(text))


def spec_from_dict(data: dict[str, Any]) -> UNetSpec:
    """Inverse of ``spec.__dict__`` after a JSON (or pickle-free checkpoint) round trip: lists back to tuples."""
    spec_dict = dict(data)
    spec_dict["down_widths"] = tuple(tuple(w) for w in spec_dict["down_widths"])
    spec_dict["up_widths"] = tuple(tuple(w) for w in spec_dict["up_widths"])
    spec_dict["extra_layers"] = tuple(spec_dict.get("extra_layers", ()))
    spec_dict["skip_levels"] = tuple(bool(b) for b in spec_dict.get("skip_levels", ()))
    return UNetSpec(**spec_dict)


@dataclass(frozen=True)
class ModelCard:
    """The parsed card of a trained model; ``data`` is the whole JSON object."""

    data: dict[str, Any]

    @property
    def suffixes(self) -> tuple[str, ...]:
        """BIDS suffix expected by each input channel, in channel order."""
        return tuple(str(c["suffix"]) for c in self.data["channels"])

    @property
    def normalisation(self) -> str:
        return str(self.data.get("normalisation", "minmax"))

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True)


def validate_card(data: dict[str, Any], spec: UNetSpec, path: str | os.PathLike[str] = "") -> ModelCard:
    """The card as a :class:`ModelCard`, or :class:`ModelError` naming what is wrong with it."""
    channels = data.get("channels")
    if not isinstance(channels, list) or not channels or not all(
            isinstance(c, dict) and isinstance(c.get("suffix"), str) and c["suffix"] for c in channels):
        raise ModelError(f"{path}: model card has no list of channels each with a BIDS 'suffix'")
    if len(channels) != spec.in_channels:
        raise ModelError(f"{path}: model card lists {len(channels)} channel(s), the network takes {spec.in_channels}")
    if data.get("normalisation", "minmax") not in NORMALISATIONS:
        raise ModelError(f"{path}: model card normalisation {data.get('normalisation')!r} is not one of "
                         f"{', '.join(NORMALISATIONS)}")
    if data.get("output", "synthsr-general") not in OUTPUTS:
        raise ModelError(f"{path}: model card output {data.get('output')!r} is not one of {', '.join(OUTPUTS)}")
    return ModelCard(data)


def save_card_model(path: str | os.PathLike[str], spec: UNetSpec, state: dict[str, torch.Tensor],
                    card: dict[str, Any]) -> Path:
    """Write weights + architecture + card to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    validate_card(card, spec, path)
    metadata = {SPEC_KEY: spec_to_json(spec), CARD_KEY: json.dumps({"format": CARD_FORMAT, **card})}
    with atomic_target(path, keep_suffix=False) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    return path


def is_card_model(path: str | os.PathLike[str]) -> bool:
    """True for a safetensors file (the format of trained models); Keras files are HDF5."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"  # 8-byte little-endian header length, then the JSON header


def read_card(path: str | os.PathLike[str], runnable: bool = True) -> tuple[UNetSpec, ModelCard]:
    """The architecture and the card of a trained model, without reading the weights.

    ``runnable`` refuses cards whose output the inference cannot produce yet (residual learning).
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{path}: not a readable safetensors model ({exc})") from None
    if SPEC_KEY not in meta or CARD_KEY not in meta:
        raise ModelError(f"{path}: safetensors file without a SynthSR model card (metadata "
                         f"'{SPEC_KEY}' and '{CARD_KEY}'); export models with synthsr-train")
    try:
        spec = spec_from_json(meta[SPEC_KEY])
        data = json.loads(meta[CARD_KEY])
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{path}: unreadable model card ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: model card is not a JSON object")
    card = validate_card(data, spec, path)
    if runnable and data.get("output", "synthsr-general") not in RUNNABLE_OUTPUTS:
        raise ModelError(f"{path}: a model with output {data['output']!r} (residual learning) cannot be run yet")
    return spec, card


def card_suffixes(model: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The channel suffixes of a model file that carries a card (``None`` for anything else: Keras files,
    registry names, paths that do not exist)."""
    path = Path(model)
    if not path.is_file() or not is_card_model(path):
        return None
    return read_card(path, runnable=False)[1].suffixes


def read_card_model(path: str | os.PathLike[str]) -> tuple[UNetSpec, dict[str, torch.Tensor], ModelCard]:
    """Architecture, inference state dict and card of a trained model."""
    spec, card = read_card(path)
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{path}: cannot read the weights ({exc})") from None
    return spec, state, card
