"""The SynthSR U-Net (neurite ``unet()`` as used by ``mri_synthsr``) as a torch module.

Per level: ``convs_per_level`` zero-padded convolutions, each followed by ELU(1); the skip connection is tapped
after the last ELU and *before* the level's BatchNorm (eps 1e-3, moving statistics); 2x max-pool down,
2x nearest upsampling up, concatenation order ``[skip, upsampled]``, and a final linear 1x1x1 convolution.

At inference the module never materialises the concatenation: a convolution of ``[skip, up]`` is the sum of
two convolutions over the halves of the kernel.  With ``slab_rows`` set, the full-resolution level (which holds
most of the memory) is evaluated in slabs along the first axis with exact halos, so peak memory is about one
full-resolution skip tensor instead of four.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .keras_h5 import UNetSpec

BN_EPSILON = 1e-3


class UNet(nn.Module):
    """SynthSR U-Net whose sizes come from a :class:`UNetSpec`."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        k = spec.kernel_size
        self.down = nn.ModuleList()
        channels = spec.in_channels
        skip_channels = []
        for widths in spec.down_widths:
            convs = nn.ModuleList()
            for width in widths:
                convs.append(nn.Conv3d(channels, width, k, padding=k // 2))
                channels = width
            self.down.append(convs)
            skip_channels.append(channels)
        self.up = nn.ModuleList()
        for level, widths in enumerate(spec.up_widths):
            convs = nn.ModuleList()
            channels = skip_channels[spec.n_levels - 2 - level] + channels
            for width in widths:
                convs.append(nn.Conv3d(channels, width, k, padding=k // 2))
                channels = width
            self.up.append(convs)
        self.skip_channels = tuple(skip_channels)
        self.likelihood = nn.Conv3d(channels, spec.out_channels, 1)
        # BatchNorm at inference is a per-channel affine map; stored as (scale, shift) buffers.
        for i, widths in enumerate(spec.down_widths):
            self._add_bn(f"bn_down_{i}", widths[-1])
        for i, widths in enumerate(spec.up_widths):
            self._add_bn(f"bn_up_{i}", widths[-1])

    def _add_bn(self, name: str, channels: int) -> None:
        self.register_buffer(f"{name}_scale", torch.ones(channels))
        self.register_buffer(f"{name}_shift", torch.zeros(channels))

    def _bn(self, name: str, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        if not self.spec.batch_norm:
            return x
        shape = (1, -1, 1, 1, 1)
        scale = getattr(self, f"{name}_scale").view(shape)
        shift = getattr(self, f"{name}_shift").view(shape)
        if inplace:
            return x.mul_(scale).add_(shift)
        return torch.addcmul(shift, x, scale)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, slab_rows: int | None = None) -> torch.Tensor:
        """``x``: (N, C, X, Y, Z) with every spatial size a multiple of ``2**(n_levels-1)``."""
        n_levels = self.spec.n_levels
        if slab_rows is not None and n_levels > 1:
            skip0, x = self._top_down_slabs(x, slab_rows)
            skips = [skip0]
            first = 1
        else:
            skips = []
            first = 0
        for level in range(first, n_levels):
            for conv in self.down[level]:
                x = F.elu(conv(x), inplace=True)
            if level < n_levels - 1:
                skips.append(x)
                x = F.max_pool3d(self._bn(f"bn_down_{level}", x), 2)
            else:
                x = self._bn(f"bn_down_{level}", x, inplace=True)
        last = n_levels - 2
        for k in range(n_levels - 1):
            skip = skips.pop()
            if k == last and slab_rows is not None:
                return self._top_up_slabs(skip, x, slab_rows)
            x = self._up_block(k, skip, x)
            del skip
        return self.likelihood(x)

    def _up_block(self, k: int, skip: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, scale_factor=2, mode="nearest")
        convs = self.up[k]
        n_skip = skip.shape[1]
        pad = convs[0].padding
        x = F.conv3d(skip, convs[0].weight[:, :n_skip], convs[0].bias, padding=pad)
        x += F.conv3d(up, convs[0].weight[:, n_skip:], None, padding=pad)
        del up
        x = F.elu(x, inplace=True)
        for conv in convs[1:]:
            x = F.elu(conv(x), inplace=True)
        return self._bn(f"bn_up_{k}", x, inplace=True)

    # ------------------------------------------------- full-resolution slabs
    def _halo(self) -> int:
        return self.spec.convs_per_level * (self.spec.kernel_size // 2)

    def _top_down_slabs(self, x: torch.Tensor, slab_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Level 0 of the encoder, slab by slab: returns (skip at full res, pooled BN output)."""
        n_rows = x.shape[2]
        slab_rows = max(2, slab_rows - slab_rows % 2)  # keep pooling windows inside a slab
        halo = self._halo()
        skip = pooled = None
        for a in range(0, n_rows, slab_rows):
            b = min(a + slab_rows, n_rows)
            lo, hi = max(a - halo, 0), min(b + halo, n_rows)
            y = x[:, :, lo:hi]
            for conv in self.down[0]:
                y, lo, hi = _conv_rows_tracked(conv, y, lo, hi, n_rows)
                y = F.elu(y, inplace=True)
            y = y[:, :, a - lo : b - lo]
            if skip is None:
                skip = y.new_empty((y.shape[0], y.shape[1], n_rows, *y.shape[3:]))
                pooled = y.new_empty((y.shape[0], y.shape[1], n_rows // 2, *(s // 2 for s in y.shape[3:])))
            skip[:, :, a:b] = y
            pooled[:, :, a // 2 : b // 2] = F.max_pool3d(self._bn("bn_down_0", y), 2)
            del y
        return skip, pooled

    def _top_up_slabs(self, skip: torch.Tensor, low: torch.Tensor, slab_rows: int) -> torch.Tensor:
        """Last decoder level plus the likelihood layer, slab by slab."""
        n_rows = skip.shape[2]
        halo = self._halo()
        k = self.spec.n_levels - 2
        out = None
        for a in range(0, n_rows, slab_rows):
            b = min(a + slab_rows, n_rows)
            lo, hi = max(a - halo, 0), min(b + halo, n_rows)
            low_rows = low[:, :, lo // 2 : (hi + 1) // 2]
            up = F.interpolate(low_rows, scale_factor=2, mode="nearest")[:, :, lo % 2 : lo % 2 + hi - lo]
            convs = self.up[k]
            n_skip = skip.shape[1]
            y, lo2, hi2 = _conv_rows_tracked(convs[0], skip[:, :, lo:hi], lo, hi, n_rows, weight=convs[0].weight[:, :n_skip])
            y2, _, _ = _conv_rows_tracked(convs[0], up, lo, hi, n_rows, weight=convs[0].weight[:, n_skip:], bias=False)
            y += y2
            del y2, up
            y = F.elu(y, inplace=True)
            lo, hi = lo2, hi2
            for conv in convs[1:]:
                y, lo, hi = _conv_rows_tracked(conv, y, lo, hi, n_rows)
                y = F.elu(y, inplace=True)
            y = y[:, :, a - lo : b - lo]
            y = self.likelihood(self._bn(f"bn_up_{k}", y, inplace=True))
            if out is None:
                out = y.new_empty((y.shape[0], y.shape[1], n_rows, *y.shape[3:]))
            out[:, :, a:b] = y
        return out


def _conv_rows_tracked(conv: nn.Conv3d, x: torch.Tensor, lo: int, hi: int, n_rows: int,
                       weight: torch.Tensor | None = None, bias: bool = True) -> tuple[torch.Tensor, int, int]:
    """Convolve rows [lo, hi) of an ``n_rows`` volume: zero padding only at the true volume borders.

    Returns the output and the rows [lo', hi') it is exact for.
    """
    half = conv.kernel_size[0] // 2
    pad_lo = half if lo == 0 else 0
    pad_hi = half if hi == n_rows else 0
    if pad_lo or pad_hi:
        x = F.pad(x, (0, 0, 0, 0, pad_lo, pad_hi))
    w = conv.weight if weight is None else weight
    y = F.conv3d(x, w, conv.bias if bias else None, padding=(0, conv.padding[1], conv.padding[2]))
    return y, lo + half - pad_lo, hi - half + pad_hi


def keras_to_state_dict(spec: UNetSpec, layers: dict[str, dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Convert Keras layer weights into this module's state dict (kernel layout XYZ-in-out -> out-in-XYZ)."""
    state: dict[str, torch.Tensor] = {}

    def put_conv(key: str, layer: str) -> None:
        w = layers[layer]["kernel"]
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(4, 3, 0, 1, 2)))
        bias = layers[layer].get("bias")
        out = w.shape[-1]
        state[f"{key}.bias"] = torch.from_numpy(bias.copy() if bias is not None else np.zeros(out, np.float32))

    def put_bn(key: str, layer: str, channels: int) -> None:
        if spec.batch_norm:
            p = layers[layer]
            inv = 1.0 / np.sqrt(p["moving_variance"].astype(np.float64) + BN_EPSILON)
            scale = p["gamma"].astype(np.float64) * inv
            shift = p["beta"].astype(np.float64) - p["moving_mean"].astype(np.float64) * scale
        else:
            scale, shift = np.ones(channels), np.zeros(channels)
        state[f"{key}_scale"] = torch.from_numpy(scale.astype(np.float32))
        state[f"{key}_shift"] = torch.from_numpy(shift.astype(np.float32))

    p, n = spec.prefix, spec.n_levels
    for level, widths in enumerate(spec.down_widths):
        for conv in range(len(widths)):
            put_conv(f"down.{level}.{conv}", f"{p}_conv_downarm_{level}_{conv}")
        put_bn(f"bn_down_{level}", f"{p}_bn_down_{level}", widths[-1])
    for k, widths in enumerate(spec.up_widths):
        for conv in range(len(widths)):
            put_conv(f"up.{k}.{conv}", f"{p}_conv_uparm_{n + k}_{conv}")
        put_bn(f"bn_up_{k}", f"{p}_bn_up_{k}", widths[-1])
    put_conv("likelihood", f"{p}_likelihood")
    return state
