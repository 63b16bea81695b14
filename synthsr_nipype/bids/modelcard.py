"""Which scan suffixes feed which input channel of a model (a small model card)."""

from __future__ import annotations

from pathlib import Path

#: Registry names of multi-channel models and the suffix of each channel, in order.
MULTICHANNEL_MODELS: dict[str, tuple[str, ...]] = {"hyperfine": ("T1w", "T2w")}

#: Order of channels assumed for a multi-channel model given as a file (the Hyperfine layout).
DEFAULT_CHANNEL_SUFFIXES: tuple[str, ...] = ("T1w", "T2w")


def model_label(model: str) -> str:
    """Short name of a model for logs and sidecars (registry name or file stem)."""
    return Path(model).stem if (("/" in model) or model.endswith(".h5")) else model


def channel_suffixes(model: str, in_channels: int | None = None) -> tuple[str, ...] | None:
    """Suffixes of the channels of ``model``; ``None`` for one-channel (any contrast) models.

    ``in_channels`` (from the loaded model's architecture) decides for models given as files.
    """
    if model in MULTICHANNEL_MODELS:
        return MULTICHANNEL_MODELS[model]
    if in_channels is not None and in_channels > 1:
        if in_channels > len(DEFAULT_CHANNEL_SUFFIXES):
            raise ValueError(f"model {model} has {in_channels} input channels; no model card")
        return DEFAULT_CHANNEL_SUFFIXES[:in_channels]
    return None
