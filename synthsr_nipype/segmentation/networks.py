"""SynthSeg's networks in torch, built from the published weights-only Keras h5 files.

Every width comes from the kernels (the files are read with :mod:`synthsr_nipype.model.keras_h5`):

* the segmentation U-Nets ``unet``, ``unet2`` (robust) and ``unet_parc`` have SynthSR's design and run on the
  project's fast :class:`~synthsr_nipype.model.unet.UNet`;
* the robust denoiser ``l2l`` (5x5x5 kernels, no skip on its two finest up levels) runs on :class:`PlainUNet`;
* the QC regressor ``qc`` (neurite ``conv_enc`` with residual levels, then two convolutions and a spatial mean)
  is :class:`QCNet`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..model.keras_h5 import infer_spec, read_layers
from ..model.spec import UNetSpec
from ..model.unet import BN_EPSILON, UNet, conv3d, keras_to_state_dict

Layers = dict[str, dict[str, np.ndarray]]


def _conv(layer: dict[str, np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A Keras kernel (X, Y, Z, in, out) as a torch (out, in, X, Y, Z) one, channels-last for oneDNN."""
    w = torch.from_numpy(np.ascontiguousarray(layer["kernel"].transpose(4, 3, 0, 1, 2))).to(device)
    b = layer.get("bias")
    return w.contiguous(memory_format=torch.channels_last_3d), None if b is None else torch.from_numpy(b).to(device)


def _bn(layer: dict[str, np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Keras BatchNormalization at inference as (scale, shift), eps 1e-3."""
    inv = 1.0 / np.sqrt(layer["moving_variance"].astype(np.float64) + BN_EPSILON)
    scale = layer["gamma"].astype(np.float64) * inv
    shift = layer["beta"].astype(np.float64) - layer["moving_mean"].astype(np.float64) * scale
    return (torch.from_numpy(scale.astype(np.float32)).view(1, -1, 1, 1, 1).to(device),
            torch.from_numpy(shift.astype(np.float32)).view(1, -1, 1, 1, 1).to(device))


class PlainUNet(nn.Module):
    """A neurite U-Net evaluated layer by layer (any kernel size, up levels with or without a skip)."""

    def __init__(self, spec: UNetSpec, layers: Layers, device: torch.device) -> None:
        super().__init__()
        self.spec = spec
        p, n = spec.prefix, spec.n_levels
        self.down = [[_conv(layers[f"{p}_conv_downarm_{lv}_{c}"], device) for c in range(len(w))]
                     for lv, w in enumerate(spec.down_widths)]
        self.up = [[_conv(layers[f"{p}_conv_uparm_{n + k}_{c}"], device) for c in range(len(w))]
                   for k, w in enumerate(spec.up_widths)]
        self.bn_down = [_bn(layers[f"{p}_bn_down_{lv}"], device) if spec.batch_norm else None for lv in range(n)]
        self.bn_up = [_bn(layers[f"{p}_bn_up_{k}"], device) if spec.batch_norm else None for k in range(n - 1)]
        self.likelihood = _conv(layers[f"{p}_likelihood"], device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        n = self.spec.n_levels
        for level in range(n):
            for conv in self.down[level]:
                x = F.elu(conv3d(x, *conv))
            skips.append(x)  # the skip is the last convolution's output, before the level's BN
            x = _apply_bn(x, self.bn_down[level])
            if level < n - 1:
                x = F.max_pool3d(x, 2)
        for k in range(n - 1):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if self.spec.concatenates(k):
                x = torch.cat([skips[n - 2 - k], x], dim=1)
            for conv in self.up[k]:
                x = F.elu(conv3d(x, *conv))
            x = _apply_bn(x, self.bn_up[k])
        return conv3d(x, *self.likelihood)


def _apply_bn(x: torch.Tensor, bn: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    return x if bn is None else x * bn[0] + bn[1]


class QCNet(nn.Module):
    """SynthSeg's QC regressor: residual encoder levels (ReLU), max-pool, two ReLU convolutions, spatial mean."""

    def __init__(self, layers: Layers, device: torch.device, path: str | Path = "") -> None:
        super().__init__()
        self.levels = []
        level = 0
        while f"qc_conv_downarm_{level}_0" in layers:
            convs = []
            c = 0
            while f"qc_conv_downarm_{level}_{c}" in layers:
                convs.append(_conv(layers[f"qc_conv_downarm_{level}_{c}"], device))
                c += 1
            expand = layers.get(f"qc_expand_down_merge_{level}")
            bn = layers.get(f"qc_bn_down_{level}")
            self.levels.append((convs, None if expand is None else _conv(expand, device),
                                None if bn is None else _bn(bn, device)))
            level += 1
        missing = [n for n in ("qc_final_conv_0", "qc_final_conv_1") if n not in layers]
        if not self.levels or missing:
            raise ModelError(f"{path}: not a SynthSeg QC weight file (no qc_conv_downarm_0_0 or "
                             f"{', '.join(missing) or 'levels'} missing)")
        self.final = [_conv(layers["qc_final_conv_0"], device), _conv(layers["qc_final_conv_1"], device)]
        self.in_channels = int(self.levels[0][0][0][0].shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.levels)
        for level, (convs, expand, bn) in enumerate(self.levels):
            first = x
            for i, conv in enumerate(convs):
                x = conv3d(x, *conv)
                if i < len(convs) - 1:  # the level's last convolution is linear (use_residuals)
                    x = F.relu(x)
            added = F.relu(conv3d(first, *expand)) if expand is not None else first
            x = F.relu(added + x)
            x = _apply_bn(x, bn)
            if level < n - 1:
                x = F.max_pool3d(x, 2)
        x = F.max_pool3d(x, 2)
        for conv in self.final:
            x = F.relu(conv3d(x, *conv))
        return x.mean(dim=(2, 3, 4))


def gaussian_blur_taps(sigma: float = 0.5) -> np.ndarray:
    """SynthSeg's ``GaussianBlur`` weights along one axis (lab2im's window: 3 taps for sigma 0.5).

    The reference convolves with the normalised 3-D kernel ``exp(sum_d(-x_d^2 / (2 sigma^2)))``, which is
    the outer product of these taps: applying them axis by axis is the same filter (up to float32 rounding).
    """
    window = int(math.ceil(2.5 * sigma) / 2) * 2 + 1
    radius = (window - 1) // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2 * sigma**2))
    return (taps / taps.sum()).astype(np.float32)


def blur(x: torch.Tensor, taps: np.ndarray) -> torch.Tensor:
    """Blur the three spatial axes of a channels-last (X, Y, Z, C) tensor; zeros beyond the borders ('SAME')."""
    radius = len(taps) // 2
    for axis in range(3):
        out = x * float(taps[radius])
        n = x.shape[axis]
        for shift in range(1, radius + 1):
            w = float(taps[radius + shift])
            out.narrow(axis, shift, n - shift).add_(x.narrow(axis, 0, n - shift), alpha=w)
            out.narrow(axis, 0, n - shift).add_(x.narrow(axis, shift, n - shift), alpha=w)
        x = out
    return x


def segmentation_unet(layers: Layers, prefix: str, path: str | Path, device: torch.device) -> nn.Module:
    """One U-Net of a file: the fast U-Net when every up level has its skip, else :class:`PlainUNet`."""
    if f"{prefix}_conv_downarm_0_0" not in layers:
        found = ", ".join(sorted(unet_prefixes(layers))) or "none"
        raise ModelError(f"{path}: no '{prefix}' U-Net in this file (U-Nets found: {found}); "
                         "not the SynthSeg weight file this run needs")
    spec = infer_spec(layers, path, prefix=prefix)
    if spec.skip_levels:
        return PlainUNet(spec, layers, device).eval()
    net = UNet(spec)
    net.load_state_dict(keras_to_state_dict(spec, layers))
    return net.eval().requires_grad_(False).to(device)


def load_layers(path: str | Path) -> Layers:
    return read_layers(path)


def unet_prefixes(layers: Layers) -> set[str]:
    return {name.split("_conv_downarm_")[0] for name in layers if "_conv_downarm_" in name}
