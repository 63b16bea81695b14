"""Read the U-Net weights out of a Keras-2 HDF5 file with h5py only.

Two layouts exist in the wild:

* weights-only (``model.save_weights``): one group per layer at the root, the layer list in the root
  attribute ``layer_names`` (variable-length strings), plus ``top_level_model_weights``;
* full model (``model.save``): the same groups under ``model_weights/``, fixed-length byte-string
  attributes, a ``model_config`` and often ``optimizer_weights/`` and layers that are not part of the U-Net.

Keras itself loads these with ``load_weights(path, by_name=True)``, so we also match by layer name and use
each group's ``weight_names`` attribute to find the arrays.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from ..errors import ModelError
from .spec import UNetSpec

_DOWN = re.compile(r"^(?P<prefix>.+)_conv_downarm_(?P<level>\d+)_(?P<conv>\d+)$")


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _names(attr: object) -> list[str]:
    if attr is None:
        return []
    if isinstance(attr, (bytes, str)):
        return [_text(attr)]
    return [_text(v) for v in np.asarray(attr).ravel()]


def read_layers(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Return ``{layer name: {weight name (e.g. 'kernel'): array}}`` for every layer holding weights."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ModelError(f"{path}: not a readable HDF5 weight file ({exc})") from None
    layers: dict[str, dict[str, np.ndarray]] = {}
    try:
        with handle:
            root = handle.get("model_weights", handle)
            layer_names = _names(root.attrs.get("layer_names"))
            if not layer_names:
                raise ModelError(f"{path}: no Keras 'layer_names' attribute; not a Keras HDF5 weight file")
            for layer in layer_names:
                if layer not in root:
                    raise ModelError(f"{path}: layer '{layer}' is listed but has no group (file truncated?)")
                group = root[layer]
                weights: dict[str, np.ndarray] = {}
                for weight_name in _names(group.attrs.get("weight_names")):
                    if weight_name not in group:
                        raise ModelError(f"{path}: weight '{weight_name}' of layer '{layer}' is missing")
                    short = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
                    weights[short] = np.asarray(group[weight_name], dtype=np.float32)
                if weights:
                    layers[layer] = weights
    except ModelError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: corrupted HDF5 weight file ({exc})") from None
    return layers


def infer_spec(layers: dict[str, dict[str, np.ndarray]], path: str | Path = "", *,
               prefix: str | None = None) -> UNetSpec:
    """Work out the U-Net's shape from layer names and kernel shapes, refusing anything inconsistent.

    ``prefix`` picks one U-Net of a file that holds several (SynthSeg-robust: ``unet``, ``l2l``, ``unet2``);
    the other layers are then ``extra_layers``.
    """
    down = {}
    for name in layers:
        match = _DOWN.match(name)
        if match and (prefix is None or match["prefix"] == prefix):
            down[name] = (match["prefix"], int(match["level"]), int(match["conv"]))
    if not down:
        raise ModelError(f"{path}: no '<prefix>_conv_downarm_<level>_<conv>' layers; not a SynthSR U-Net")
    prefixes = {p for p, _, _ in down.values()}
    if len(prefixes) != 1:
        raise ModelError(f"{path}: several U-Net prefixes found ({', '.join(sorted(prefixes))})")
    prefix = prefixes.pop()
    # Count contiguous indices from 0, so that a stray extra layer is reported as unexpected rather than
    # turning every expected layer into a missing one.
    n_levels = 0
    while f"{prefix}_conv_downarm_{n_levels}_0" in layers:
        n_levels += 1
    n_conv = 0
    while f"{prefix}_conv_downarm_0_{n_conv}" in layers:
        n_conv += 1
    if n_levels == 0 or n_conv == 0:
        raise ModelError(f"{path}: no '{prefix}_conv_downarm_0_0' layer; not a SynthSR U-Net")
    batch_norm = any(name.startswith(f"{prefix}_bn_") for name in layers)

    expected: dict[str, dict[str, tuple[int, ...] | None]] = {}
    missing: list[str] = []
    misshaped: list[str] = []

    def kernel(name: str) -> np.ndarray | None:
        if name not in layers or "kernel" not in layers[name]:
            missing.append(name)
            return None
        return layers[name]["kernel"]

    first = kernel(f"{prefix}_conv_downarm_0_0")
    if first is None or first.ndim != 5:
        raise ModelError(f"{path}: layer {prefix}_conv_downarm_0_0 has no 3-D convolution kernel")
    ksize = int(first.shape[0])
    in_channels = int(first.shape[3])

    def check_conv(name: str, k: int, c_in: int) -> int:
        w = kernel(name)
        expected[name] = {}
        if w is None:
            return -1
        c_out = int(w.shape[-1]) if w.ndim == 5 else -1
        want = (k, k, k, c_in, c_out)
        if w.shape != want or c_in < 0:
            misshaped.append(f"{name} kernel {tuple(w.shape)} (expected {want})")
        bias = layers[name].get("bias")
        if bias is not None and bias.shape != (c_out,):
            misshaped.append(f"{name} bias {tuple(bias.shape)} (expected {(c_out,)})")
        return c_out

    def check_bn(name: str, channels: int) -> None:
        expected[name] = {}
        if not batch_norm:
            return
        if name not in layers:
            missing.append(name)
            return
        for key in ("gamma", "beta", "moving_mean", "moving_variance"):
            arr = layers[name].get(key)
            if arr is None:
                misshaped.append(f"{name} has no {key}")
            elif channels >= 0 and arr.shape != (channels,):
                misshaped.append(f"{name} {key} {tuple(arr.shape)} (expected {(channels,)})")

    down_widths: list[tuple[int, ...]] = []
    skips: list[int] = []
    channels = in_channels
    for level in range(n_levels):
        widths = []
        for conv in range(n_conv):
            channels = check_conv(f"{prefix}_conv_downarm_{level}_{conv}", ksize, channels)
            widths.append(channels)
        skips.append(channels)
        check_bn(f"{prefix}_bn_down_{level}", channels)
        down_widths.append(tuple(widths))

    up_widths: list[tuple[int, ...]] = []
    skip_levels: list[bool] = []
    for k in range(n_levels - 1):
        widths = []
        # neurite's skip_n_concatenations: an up level may take the upsampled tensor alone; its first
        # kernel's input width says which
        first_up = layers.get(f"{prefix}_conv_uparm_{n_levels + k}_0", {}).get("kernel")
        concat = not (first_up is not None and first_up.ndim == 5 and channels >= 0
                      and first_up.shape[3] == channels != skips[n_levels - 2 - k] + channels)
        skip_levels.append(concat)
        if concat:
            channels = skips[n_levels - 2 - k] + channels if channels >= 0 else -1
        for conv in range(n_conv):
            channels = check_conv(f"{prefix}_conv_uparm_{n_levels + k}_{conv}", ksize, channels)
            widths.append(channels)
        check_bn(f"{prefix}_bn_up_{k}", channels)
        up_widths.append(tuple(widths))
    out_channels = check_conv(f"{prefix}_likelihood", 1, channels)

    unexpected = sorted(n for n in layers if n.startswith(prefix + "_") and n not in expected)
    extra = tuple(sorted(n for n in layers if not n.startswith(prefix + "_")))
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append("missing layers: " + ", ".join(missing))
        if unexpected:
            parts.append("unexpected layers: " + ", ".join(unexpected))
        if misshaped:
            parts.append("mis-shaped: " + "; ".join(misshaped))
        raise ModelError(f"{path}: weights do not fit a SynthSR U-Net ({' | '.join(parts)})")
    return UNetSpec(
        prefix=prefix,
        n_levels=n_levels,
        convs_per_level=n_conv,
        kernel_size=ksize,
        in_channels=in_channels,
        out_channels=out_channels,
        down_widths=tuple(down_widths),
        up_widths=tuple(up_widths),
        batch_norm=batch_norm,
        extra_layers=extra,
        skip_levels=() if all(skip_levels) else tuple(skip_levels),
    )
