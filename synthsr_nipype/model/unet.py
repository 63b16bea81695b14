"""The SynthSR U-Net (neurite ``unet()`` as used by ``mri_synthsr``) as a torch module.

Per level: ``convs_per_level`` zero-padded convolutions, each followed by ELU(1); the skip connection is tapped
after the last ELU and *before* the level's BatchNorm (eps 1e-3, moving statistics); 2x max-pool down,
2x nearest upsampling up, concatenation order ``[skip, upsampled]``, and a final linear 1x1x1 convolution.

At inference the module never materialises the concatenation: a convolution of ``[skip, up]`` is the sum of
two convolutions over the halves of the kernel, and the half on the nearest-upsampled tensor is computed on the
low-resolution grid with one 2x2x2 kernel per output parity (exact; 8/27 of the work, which removes about a
quarter of the network's FLOPs).  Activations are channels-last and every CPU convolution goes to oneDNN.
With ``slab_rows`` set, the full-resolution level (which holds most of the memory) is evaluated in slabs along
the first axis with exact halos, so peak memory is about one full-resolution skip tensor instead of four.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .spec import UNetSpec

BN_EPSILON = 1e-3


def conv_stacks(spec: UNetSpec) -> tuple[nn.ModuleList, nn.ModuleList, nn.Conv3d, tuple[int, ...]]:
    """The U-Net's convolutions: (encoder per level, decoder per level, likelihood, skip widths).

    One construction for the inference network and the trainable one (``train.unet``), so that their state
    dicts share the keys ``down.L.C``, ``up.L.C`` and ``likelihood`` that the export relies on.
    """
    k = spec.kernel_size
    down = nn.ModuleList()
    channels = spec.in_channels
    skip_channels = []
    for widths in spec.down_widths:
        convs = nn.ModuleList()
        for width in widths:
            convs.append(nn.Conv3d(channels, width, k, padding=k // 2))
            channels = width
        down.append(convs)
        skip_channels.append(channels)
    up = nn.ModuleList()
    for level, widths in enumerate(spec.up_widths):
        convs = nn.ModuleList()
        if spec.concatenates(level):
            channels = skip_channels[spec.n_levels - 2 - level] + channels
        for width in widths:
            convs.append(nn.Conv3d(channels, width, k, padding=k // 2))
            channels = width
        up.append(convs)
    return down, up, nn.Conv3d(channels, spec.out_channels, 1), tuple(skip_channels)


class UNet(nn.Module):
    """SynthSR U-Net whose sizes come from a :class:`UNetSpec`."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        if not all(spec.concatenates(k) for k in range(len(spec.up_widths))):
            raise ValueError("the fast U-Net needs a skip at every up level (segmentation.networks has the others)")
        self.spec = spec
        self.down, self.up, self.likelihood, self.skip_channels = conv_stacks(spec)
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
        scale = getattr(self, f"{name}_scale").view(shape).to(x.dtype)
        shift = getattr(self, f"{name}_shift").view(shape).to(x.dtype)
        # multiply then add, in place or not: the slabbed and the whole-volume paths round identically
        if inplace:
            return x.mul_(scale).add_(shift)
        return torch.mul(x, scale).add_(shift)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, slab_rows: int | None = None, recompute: int = 0) -> torch.Tensor:
        """``x``: (N, C, X, Y, Z) with every spatial size a multiple of ``2**(n_levels-1)``.

        ``slab_rows`` evaluates the full-resolution level (encoder and decoder) in slabs of that many rows
        along X with exact halos, and the half-resolution level in slabs of half as many; the result is the
        same up to float32 summation order.  ``recompute`` = 1 (2) does not keep the skip tensor of level 0
        (and 1) between encoder and decoder: each decoder slab recomputes the rows it needs from the level's
        input, which is 4 (2) times smaller.  Exact too; it costs the encoder convolutions of those levels a
        second time (+14 % (+25 %) FLOPs for the published model) and removes most of the memory.
        """
        fast = self._fast_weights(x.device, x.dtype)
        x = x.contiguous(memory_format=CL)
        n_levels = self.spec.n_levels
        skips: list = []
        for level in range(n_levels - 1):
            keep = level >= recompute
            skip, pooled = self._down_level(level, x, fast, _level_rows(slab_rows, level), keep_skip=keep)
            skips.append(skip if keep else (level, x))
            x = pooled
        for conv in fast.down[n_levels - 1]:
            x = F.elu(conv3d(x, *conv), inplace=True)
        x = self._bn(f"bn_down_{n_levels - 1}", x, inplace=True)
        for k in range(n_levels - 1):
            skip = skips.pop()
            last = k == n_levels - 2
            x = self._up_level(k, skip, x, fast, _level_rows(slab_rows, n_levels - 2 - k), likelihood=last)
            del skip
        if n_levels == 1:
            x = conv3d(x, *fast.likelihood)
        return x

    # ------------------------------------------------------------ fast path
    def _fast_weights(self, device: torch.device, dtype: torch.dtype) -> "_FastWeights":
        """Weights in the layouts the fast path wants, rebuilt whenever a parameter changes."""
        key = (device, dtype, tuple((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_fast_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        fast = _FastWeights.build(self, device, dtype)
        self.__dict__["_fast_cache"] = (key, fast)
        return fast

    def _down_rows(self, level: int, x: torch.Tensor, fast: "_FastWeights", a: int, b: int) -> torch.Tensor:
        """Rows [a, b) of encoder level ``level``'s output before its BN (its skip), from the level input ``x``."""
        n_rows = x.shape[2]
        halo = len(fast.down[level]) * self._half()
        lo, hi = max(a - halo, 0), min(b + halo, n_rows)
        y = x[:, :, lo:hi]
        for conv in fast.down[level]:
            y, lo, hi = conv_rows(y, lo, hi, n_rows, *conv)
            y = F.elu(y, inplace=True)
        return y[:, :, a - lo : b - lo]

    def _down_level(self, level: int, x: torch.Tensor, fast: "_FastWeights", slab_rows: int | None,
                    keep_skip: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Encoder level ``level``: (skip before BN or None, max-pooled BN output), slab by slab along X."""
        n_rows = x.shape[2]
        step = n_rows if not slab_rows else min(n_rows, max(2, int(slab_rows) - int(slab_rows) % 2))
        name = f"bn_down_{level}"
        if step < n_rows:  # the level's outputs first: long-lived blocks below the slabs' temporaries
            n, c = x.shape[0], fast.down[level][-1][0].shape[0]
            pooled = _empty((n, c, n_rows // 2, *(s // 2 for s in x.shape[3:])), x)
            skip = _empty((n, c, n_rows, *x.shape[3:]), x) if keep_skip else None
        for a in range(0, n_rows, step):
            b = min(a + step, n_rows)
            y = self._down_rows(level, x, fast, a, b)
            if step == n_rows:
                y = y.contiguous(memory_format=CL)
                if not keep_skip:
                    return None, F.max_pool3d(self._bn(name, y, inplace=True), 2)
                return y, F.max_pool3d(self._bn(name, y), 2)
            if keep_skip:
                skip[:, :, a:b] = y
            # y is a view of a temporary: BN in place once the skip rows are saved
            pooled[:, :, a // 2 : b // 2] = F.max_pool3d(self._bn(name, y, inplace=True), 2)
            del y
        return skip, pooled

    def _up_level(self, k: int, skip: "torch.Tensor | tuple[int, torch.Tensor]", low: torch.Tensor,
                  fast: "_FastWeights", slab_rows: int | None, likelihood: bool) -> torch.Tensor:
        """Decoder level ``k`` (+ the likelihood layer when ``likelihood``), slab by slab along X.

        ``skip`` is the stored skip tensor, or ``(level, level_input)`` to recompute its rows slab by slab.
        """
        if isinstance(skip, tuple):
            level, level_input = skip
            n_rows = level_input.shape[2]

            def skip_rows(lo: int, hi: int) -> torch.Tensor:
                return self._down_rows(level, level_input, fast, lo, hi)
        else:
            n_rows = skip.shape[2]

            def skip_rows(lo: int, hi: int) -> torch.Tensor:
                return skip[:, :, lo:hi]
        step = n_rows if not slab_rows else min(n_rows, max(2, int(slab_rows)))
        if step < n_rows:
            convs = fast.up[k]
            last = fast.likelihood[0] if likelihood else (convs.rest[-1][0] if convs.rest else convs.skip_weight)
            out = _empty((low.shape[0], last.shape[0], n_rows, *(2 * s for s in low.shape[3:])), low)
        for a in range(0, n_rows, step):
            b = min(a + step, n_rows)
            y = self._up_rows(k, skip_rows, n_rows, low, fast, a, b)
            if likelihood:
                y = conv3d(y, *fast.likelihood)
            if step == n_rows:
                return y
            out[:, :, a:b] = y
            del y
        return out

    def _up_rows(self, k: int, skip_rows, n_rows: int, low: torch.Tensor, fast: "_FastWeights",
                 a: int, b: int) -> torch.Tensor:
        """Rows [a, b) of decoder level ``k`` after its BN.

        The first convolution of ``[skip, upsample(low)]`` is split into its two halves; the half on the
        nearest-upsampled input runs on the low-resolution grid with one 2x2x2 kernel per output parity
        (``_FastWeights.parity_kernel``), which is exact and costs 8/27 of the full-resolution convolution.
        """
        half = self._half()
        convs = fast.up[k]
        reach = (len(convs.rest)) * half  # rows the later convolutions need around [a, b)
        c0, c1 = max(a - reach, 0), min(b + reach, n_rows)
        c0 -= c0 % 2  # even-aligned so that the parity interleave starts on an even row
        c1 = min(c1 + c1 % 2, n_rows)
        lo, hi = max(c0 - half, 0), min(c1 + half, n_rows)
        y, lo, hi = conv_rows(skip_rows(lo, hi), lo, hi, n_rows, convs.skip_weight, convs.bias)
        assert (lo, hi) == (c0, c1)
        if convs.parity is not None:
            n_low = low.shape[2]
            y = y.contiguous(memory_format=CL)
            low_rows = rows_zero_padded(low, c0 // 2 - 1, c1 // 2 + 1, n_low)
            parity = conv3d(low_rows, convs.parity, None, padding=(0, 1, 1))
            del low_rows
            add_parity_(y, parity)
            del parity
        else:  # kernel sizes other than 3: materialise the upsampled rows
            ulo, uhi = max(c0 - half, 0), min(c1 + half, n_rows)
            up = F.interpolate(low[:, :, ulo // 2 : (uhi + 1) // 2], scale_factor=2, mode="nearest")
            up = up[:, :, ulo % 2 : ulo % 2 + uhi - ulo]
            y2, _, _ = conv_rows(up, ulo, uhi, n_rows, convs.up_weight, None)
            y += y2
            del y2, up
        y = F.elu(y, inplace=True)
        for conv in convs.rest:
            y, lo, hi = conv_rows(y, lo, hi, n_rows, *conv)
            y = F.elu(y, inplace=True)
        y = y[:, :, a - lo : b - lo]
        return self._bn(f"bn_up_{k}", y, inplace=True)

    def _half(self) -> int:
        return self.spec.kernel_size // 2

    def _halo(self) -> int:
        return self.spec.convs_per_level * self._half()


# ----------------------------------------------------------------------------- fast-path helpers
CL = torch.channels_last_3d
SLAB_LEVELS = 2  # levels evaluated in slabs when slab_rows is set (they hold ~95 % of the activations)


def _level_rows(slab_rows: int | None, level: int) -> int | None:
    if not slab_rows or level >= SLAB_LEVELS:
        return None
    return max(2, int(slab_rows) >> level)
_MKLDNN_CONV = hasattr(torch, "mkldnn_convolution")


@dataclass
class _UpWeights:
    skip_weight: torch.Tensor
    bias: torch.Tensor | None
    parity: torch.Tensor | None  # (8 * out, up_in, 2, 2, 2), or None when kernel_size != 3
    up_weight: torch.Tensor | None  # generic fallback
    rest: list[tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class _FastWeights:
    down: list[list[tuple[torch.Tensor, torch.Tensor | None]]]
    up: list[_UpWeights]
    likelihood: tuple[torch.Tensor, torch.Tensor | None]

    @staticmethod
    def build(net: UNet, device: torch.device, dtype: torch.dtype) -> "_FastWeights":
        def prep(w: torch.Tensor) -> torch.Tensor:
            return w.detach().to(device=device, dtype=dtype).contiguous(memory_format=CL)

        def bias(conv: nn.Conv3d) -> torch.Tensor | None:
            return None if conv.bias is None else conv.bias.detach().to(device=device, dtype=dtype)

        down = [[(prep(c.weight), bias(c)) for c in convs] for convs in net.down]
        up = []
        for k, convs in enumerate(net.up):
            n_skip = net.skip_channels[net.spec.n_levels - 2 - k]
            w = convs[0].weight.detach()
            three = tuple(w.shape[2:]) == (3, 3, 3)
            up.append(_UpWeights(
                skip_weight=prep(w[:, :n_skip]), bias=bias(convs[0]),
                parity=prep(parity_kernel(w[:, n_skip:])) if three else None,
                up_weight=None if three else prep(w[:, n_skip:]),
                rest=[(prep(c.weight), bias(c)) for c in convs[1:]]))
        return _FastWeights(down=down, up=up, likelihood=(prep(net.likelihood.weight), bias(net.likelihood)))


# For an output at full-resolution index 2i + p, the taps t = -1, 0, 1 of a size-3 kernel read the nearest-
# upsampled input at low-resolution index i + floor((p + t) / 2): a 2-tap window starting at i - 1 + p.
_PARITY_TAPS = np.array([[[1, 0, 0], [0, 1, 1]],    # p = 0: window (i-1, i)
                         [[1, 1, 0], [0, 0, 1]]],   # p = 1: window (i, i+1)
                        dtype=np.float64)


def parity_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3, 3) kernel on an upsampled input -> (8 * out, in, 2, 2, 2) on the low-resolution one.

    Output channel block ``4 px + 2 py + pz`` holds the kernel for the output voxels of parity (px, py, pz).
    Differentiable (the training network's decoder runs through it); summed in float64 (float32 on Apple MPS,
    which has no float64), returned in the weight's dtype.
    """
    w = weight.to(torch.float32 if weight.device.type == "mps" else torch.float64)
    m = torch.from_numpy(_PARITY_TAPS).to(device=w.device, dtype=w.dtype)
    k = torch.einsum("xat,ybu,zcv,oituv->xyzoiabc", m, m, m, w)
    return k.reshape(8 * w.shape[0], w.shape[1], 2, 2, 2).to(weight.dtype)


def add_parity_(y: torch.Tensor, parity: torch.Tensor) -> torch.Tensor:
    """``y[2i+px, 2j+py, 2k+pz] += parity[block(px,py,pz)][i+px, j+py, k+pz]`` (both channels-last), in place."""
    n, c, r, h, w = y.shape
    assert r % 2 == 0 and h % 2 == 0 and w % 2 == 0
    assert y.is_contiguous(memory_format=CL) and parity.shape[2:] == (r // 2 + 1, h // 2 + 1, w // 2 + 1)
    src = _parity_source(parity.contiguous(memory_format=CL), tuple(y.shape))
    dst = _parity_view(y)
    dst.add_(src)
    return y


def _parity_view(y: torch.Tensor) -> torch.Tensor:
    """``y`` (channels-last, even sizes) as (n, r/2, 2, h/2, 2, w/2, 2, c): voxel 2i+px at [i, px]."""
    n, c, r, h, w = y.shape
    tn, _, td, th, tw = y.stride()
    return y.as_strided((n, r // 2, 2, h // 2, 2, w // 2, 2, c), (tn, 2 * td, td, 2 * th, th, 2 * tw, tw, 1),
                        y.storage_offset())


def _parity_source(parity: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The parity tensor (channels-last) read as :func:`_parity_view` of a full-resolution ``shape``."""
    n, c, r, h, w = shape
    sn, _, sd, sh, sw = parity.stride()
    return parity.as_strided((n, r // 2, 2, h // 2, 2, w // 2, 2, c),
                             (sn, sd, sd + 4 * c, sh, sh + 2 * c, sw, sw + c, 1), parity.storage_offset())


class AddParity(torch.autograd.Function):
    """:func:`add_parity_` for autograd (the training network's decoder): ``y`` is updated in place; the
    gradient of ``parity`` is the gradient of ``y`` read back through the same strided view."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, parity: torch.Tensor) -> torch.Tensor:
        ctx.mark_dirty(y)
        ctx.parity_shape = parity.shape
        return add_parity_(y, parity)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad = grad.contiguous(memory_format=CL)
        grad_parity = _zeros(tuple(ctx.parity_shape), grad)
        _parity_source(grad_parity, tuple(grad.shape)).copy_(_parity_view(grad))
        return grad, grad_parity


def _empty(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=CL)


def _zeros(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return _empty(shape, like).zero_()


def rows_zero_padded(x: torch.Tensor, lo: int, hi: int, n_rows: int) -> torch.Tensor:
    """Rows [lo, hi) of ``x`` along X, zeros for rows outside [0, n_rows)."""
    if lo >= 0 and hi <= n_rows:
        return x[:, :, lo:hi]
    out = _zeros((x.shape[0], x.shape[1], hi - lo, *x.shape[3:]), x)
    a, b = max(lo, 0), min(hi, n_rows)
    out[:, :, a - lo : b - lo] = x[:, :, a:b]
    return out


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           padding: tuple[int, int, int] | None = None) -> torch.Tensor:
    """A stride-1 convolution; on the CPU always oneDNN in channels-last.

    ``F.conv3d`` picks oneDNN only when ``N*C*X*Y`` exceeds 20480 (a 2-D heuristic), and otherwise falls
    back to ``slow_conv3d``, 10-50x slower: that is where small volumes and the narrow test models lost
    their time.
    """
    if padding is None:
        padding = tuple(s // 2 for s in weight.shape[2:])
    if _MKLDNN_CONV and x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        return torch.mkldnn_convolution(x.contiguous(memory_format=CL), weight, bias, list(padding), [1, 1, 1],
                                        [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, padding=padding)


def conv_rows(x: torch.Tensor, lo: int, hi: int, n_rows: int, weight: torch.Tensor,
              bias: torch.Tensor | None) -> tuple[torch.Tensor, int, int]:
    """Convolve rows [lo, hi) of an ``n_rows`` volume: zero padding along X only at the true volume borders.

    Returns the output and the rows [lo', hi') it is exact for.
    """
    half = weight.shape[2] // 2
    pad_lo = half if lo == 0 else 0
    pad_hi = half if hi == n_rows else 0
    if not (pad_lo or pad_hi):
        y = conv3d(x, weight, bias, padding=(0, weight.shape[3] // 2, weight.shape[4] // 2))
    else:
        # the convolution's own (symmetric) zero padding, then drop the rows it produced on an inner side:
        # no padded copy of the input (slabs of level 0 are ~140 MB)
        y = conv3d(x, weight, bias, padding=(half, weight.shape[3] // 2, weight.shape[4] // 2))
        y = y[:, :, half - pad_lo : y.shape[2] - (half - pad_hi)]
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
