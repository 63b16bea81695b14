"""Inference as pure functions; :func:`run` is the one public entry point."""

from .io import InputVolume, load_volume
from .pipeline import (
    Prepared,
    combine_passes,
    finish_general,
    finish_hyperfine,
    output_image,
    pick_device,
    predict,
    prepare_channels,
    prepare_general,
    prepare_hyperfine,
    run,
    to_uint8,
)

__all__ = ["run", "load_volume", "InputVolume", "Prepared", "prepare_general", "prepare_channels",
           "prepare_hyperfine", "predict", "combine_passes", "finish_general", "finish_hyperfine",
           "to_uint8", "output_image", "pick_device"]
