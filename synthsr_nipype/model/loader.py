"""Loading a network: a registry name, a Keras .h5 file or a trained model, onto a device."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from . import cache
from .card import ModelCard, is_card_model, read_card_model
from .keras_h5 import infer_spec, read_layers
from .registry import DEFAULT_MODEL, resolve_model_path
from .spec import UNetSpec
from .unet import UNet, keras_to_state_dict

log = logging.getLogger(__name__)


@dataclass
class SynthSRModel:
    """A ready-to-run network with the provenance needed for sidecars."""

    net: UNet
    spec: UNetSpec
    path: Path
    sha256: str
    name: str
    device: torch.device
    card: ModelCard | None = None  # models trained by this package; None for Keras files

    @property
    def arch(self) -> dict[str, object]:
        return self.spec.as_dict()

    @property
    def in_channels(self) -> int:
        return self.spec.in_channels


def load_model(model: "str | os.PathLike[str] | SynthSRModel" = DEFAULT_MODEL,
               device: str | torch.device = "cpu") -> SynthSRModel:
    """Load a registry name, a Keras .h5 path or a trained model (.safetensors with a card) onto ``device``.

    Converted Keras weights are cached by the file's SHA-256, so a second load skips HDF5 parsing.
    """
    if isinstance(model, SynthSRModel):
        return model if model.device == torch.device(device) else _moved(model, torch.device(device))
    path, info = resolve_model_path(model)
    try:
        sha256 = cache.sha256_file(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc})") from None
    if info is not None and info.sha256 is not None and path.name == info.filename and sha256 != info.sha256:
        log.warning("%s: SHA-256 %s differs from the published %s model", path, sha256, info.name)
    card = None
    if is_card_model(path):
        spec, state, card = read_card_model(path)
    elif (cached := cache.load_cached(sha256)) is None:
        layers = read_layers(path)
        spec = infer_spec(layers, path)
        state = keras_to_state_dict(spec, layers)
        cache.store(sha256, spec, state)
    else:
        spec, state = cached
    net = UNet(spec)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: converted weights do not fit the network ({exc})") from None
    net.eval().requires_grad_(False)
    dev = torch.device(device)
    net.to(dev)
    name = info.name if info is not None else str(path)
    return SynthSRModel(net=net, spec=spec, path=path, sha256=sha256, name=name, device=dev, card=card)


def _moved(model: SynthSRModel, device: torch.device) -> SynthSRModel:
    return SynthSRModel(net=model.net.to(device), spec=model.spec, path=model.path, sha256=model.sha256,
                        name=model.name, device=device, card=model.card)
