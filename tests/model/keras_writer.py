"""Write Keras-2 style HDF5 weight files from a {layer: {weight: array}} dict, for loader tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from synthsr_nipype.model.keras_h5 import read_layers


def write_weights_only(path: Path, layers: dict[str, dict[str, np.ndarray]], order: list[str] | None = None) -> Path:
    names = order or list(layers)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array(names, dtype=object)
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["keras_version"] = "2.15.0"
        for name in names:
            group = handle.create_group(name)
            weights = layers.get(name, {})
            group.attrs["weight_names"] = np.array([f"{name}/{w}:0" for w in weights], dtype=object)
            for w, arr in weights.items():
                group.create_dataset(f"{name}/{w}:0", data=arr)
    return path


def copy_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    return {k: dict(v) for k, v in read_layers(path).items()}


def random_unet_layers(n_levels: int, base: int, in_channels: int, seed: int = 0, prefix: str = "unet"):
    """A random U-Net of any depth in Keras naming, with well-conditioned BN statistics."""
    rng = np.random.default_rng(seed)
    layers: dict[str, dict[str, np.ndarray]] = {}

    def conv(name, k, c_in, c_out):
        limit = np.sqrt(6 / (k**3 * (c_in + c_out)))
        layers[name] = {"kernel": rng.uniform(-limit, limit, (k, k, k, c_in, c_out)).astype(np.float32),
                        "bias": rng.normal(0, 0.05, c_out).astype(np.float32)}

    def bn(name, c):
        layers[name] = {"gamma": rng.uniform(0.7, 1.3, c).astype(np.float32),
                        "beta": rng.normal(0, 0.2, c).astype(np.float32),
                        "moving_mean": rng.normal(0, 0.2, c).astype(np.float32),
                        "moving_variance": rng.uniform(0.5, 1.5, c).astype(np.float32)}

    channels, skips = in_channels, []
    for level in range(n_levels):
        width = base * 2**level
        for c in range(2):
            conv(f"{prefix}_conv_downarm_{level}_{c}", 3, channels, width)
            channels = width
        skips.append(width)
        bn(f"{prefix}_bn_down_{level}", width)
    for k in range(n_levels - 1):
        width = base * 2 ** (n_levels - 2 - k)
        channels = skips[n_levels - 2 - k] + channels
        for c in range(2):
            conv(f"{prefix}_conv_uparm_{n_levels + k}_{c}", 3, channels, width)
            channels = width
        bn(f"{prefix}_bn_up_{k}", width)
    conv(f"{prefix}_likelihood", 1, channels, 1)
    return layers
