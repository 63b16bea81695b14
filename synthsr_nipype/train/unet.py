"""The SynthSR U-Net as a trainable module, and its export to the inference :class:`~synthsr_nipype.model.UNet`.

Same topology as the inference network (``model/unet.py``): per level ``convs_per_level`` convolutions each
followed by ELU(1), the skip tapped after the last ELU and before the level's BatchNorm (eps 1e-3), 2x
max-pool, 2x nearest upsampling, concatenation ``[skip, upsampled]``, a final linear 1x1x1 convolution.
Here BatchNorm is ``nn.BatchNorm3d`` with batch statistics while training and running statistics in eval mode
(Keras' momentum 0.99 is torch's 0.01).  The parameter names of the convolutions are those of the inference
module, so :func:`export_state_dict` copies them and folds each BatchNorm into the ``*_scale``/``*_shift``
buffers, exactly as ``keras_to_state_dict`` does for a Keras file.

The inference network keeps its own fast path (split concatenation, slabs, no autograd); this one is plain
autograd torch.  Both run their CPU convolutions through ``model.unet.conv3d`` (oneDNN in channels-last),
which torch differentiates too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..model.spec import UNetSpec
from ..model.unet import BN_EPSILON, CL, AddParity, UNet, conv3d, conv_stacks, parity_kernel

#: Keras' BatchNormalization momentum 0.99 (weight of the old statistic) as torch's momentum (of the new one).
BN_MOMENTUM = 0.01


class TrainableUNet(nn.Module):
    """Trainable SynthSR U-Net built from a :class:`UNetSpec` (``prefix`` and ``extra_layers`` are ignored)."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.down, self.up, self.likelihood, _ = conv_stacks(spec)
        self.bn_down = nn.ModuleList(_batch_norm(w[-1], spec.batch_norm) for w in spec.down_widths)
        self.bn_up = nn.ModuleList(_batch_norm(w[-1], spec.batch_norm) for w in spec.up_widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, C, X, Y, Z), every spatial size a multiple of ``2**(n_levels-1)``."""
        n_levels = self.spec.n_levels
        x = x.contiguous(memory_format=CL)
        skips = []
        for level in range(n_levels):
            for conv in self.down[level]:
                x = F.elu(_conv(conv, x))
            if level < n_levels - 1:
                skips.append(x)
                x = F.max_pool3d(self.bn_down[level](x), 2)
            else:
                x = self.bn_down[level](x)
        for k in range(n_levels - 1):
            first, *rest = self.up[k]
            x = F.elu(_up_conv(first, skips.pop(), x))
            for conv in rest:
                x = F.elu(_conv(conv, x))
            x = self.bn_up[k](x)
        return _conv(self.likelihood, x)


def _batch_norm(channels: int, enabled: bool) -> nn.Module:
    if not enabled:
        return nn.Identity()
    return nn.BatchNorm3d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def _up_conv(conv: nn.Conv3d, skip: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """``conv([skip, upsample(low)])`` (nearest, 2x) as the inference network computes it: the skip half of the
    kernel at full resolution, the other half on the low-resolution grid with one 2x2x2 kernel per output
    parity (exact; 8/27 of that half's work), and no upsampled or concatenated tensor."""
    weight = conv.weight
    if tuple(weight.shape[2:]) != (3, 3, 3):
        return _conv(conv, torch.cat([skip, F.interpolate(low, scale_factor=2, mode="nearest")], dim=1))
    n_skip = skip.shape[1]
    y = conv3d(skip, weight[:, :n_skip], conv.bias).contiguous(memory_format=CL)
    parity = conv3d(low, parity_kernel(weight[:, n_skip:]), None, padding=(1, 1, 1))
    return AddParity.apply(y, parity)


def _conv(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32 or x.device.type != "cpu":  # autocast (bf16) and GPUs: torch's own dispatch
        return conv(x)
    return conv3d(x, conv.weight, conv.bias)


@torch.no_grad()
def recalibrate_batch_norm(net: TrainableUNet, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running statistics by their plain average over ``batches`` (inputs).

    Training with batch size 1 and a learning rate that keeps moving the weights leaves the exponential
    running averages (momentum 0.01, ~100 steps) behind the final weights; averaging with the weights frozen
    ("precise BN") gives the eval-mode network the statistics of the network it is.  Returns the count used.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    try:
        return _forward_all(net, batches, training=True)
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


def _forward_all(net: TrainableUNet, batches: Iterable[torch.Tensor], *, training: bool) -> int:
    """Run ``net`` (in training or eval mode) over ``batches`` for what its hooks or BatchNorms record; its
    mode is restored. Returns the number of batches."""
    was_training = net.training
    net.train(training)
    count = 0
    try:
        for x in batches:
            net(x)
            count += 1
    finally:
        net.train(was_training)
    return count


def export_state_dict(net: TrainableUNet) -> dict[str, torch.Tensor]:
    """The inference :class:`UNet`'s state dict: convolutions copied, each BatchNorm folded (running stats)."""
    state: dict[str, torch.Tensor] = {}
    for name, value in net.state_dict().items():
        if name.startswith(("down.", "up.", "likelihood.")):
            state[name] = value.detach().to("cpu", torch.float32).clone()
    spec = net.spec
    for prefix, bns, widths in (("bn_down", net.bn_down, spec.down_widths), ("bn_up", net.bn_up, spec.up_widths)):
        for i, (bn, width) in enumerate(zip(bns, widths)):
            scale, shift = _fold(bn, width[-1])
            state[f"{prefix}_{i}_scale"] = scale
            state[f"{prefix}_{i}_shift"] = shift
    return state


def _fold(bn: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(bn, nn.BatchNorm3d):
        return torch.ones(channels), torch.zeros(channels)
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    shift = beta - mean * scale
    return scale.float().cpu(), shift.float().cpu()


def to_inference(net: TrainableUNet) -> UNet:
    """An inference :class:`UNet` (eval, no grad) holding ``net``'s current weights."""
    out = UNet(net.spec)
    out.load_state_dict(export_state_dict(net))
    return out.eval().requires_grad_(False)


@torch.no_grad()
def load_inference_weights(net: TrainableUNet, state: dict[str, torch.Tensor],
                           batches: Iterable[torch.Tensor]) -> int:
    """Start ``net`` from an exported model (BatchNorm folded into ``bn_*_scale``/``bn_*_shift``).

    The convolutions are copied; each BatchNorm gets the statistics of its input over ``batches`` (mean ``m``,
    variance ``v``, measured with the exported network's behaviour) and ``weight = scale * sqrt(v + eps)``,
    ``bias = shift + scale * m``, so that in eval mode the network computes exactly the exported model and in
    training mode (batch statistics) about the same.  Returns the number of batches used.
    """
    net.load_state_dict({k: v for k, v in state.items() if k.startswith(("down.", "up.", "likelihood."))},
                        strict=False)
    pairs = [(bn, f"bn_down_{i}") for i, bn in enumerate(net.bn_down)] + \
        [(bn, f"bn_up_{i}") for i, bn in enumerate(net.bn_up)]
    bns = [(bn, state[f"{key}_scale"].float(), state[f"{key}_shift"].float())
           for bn, key in pairs if isinstance(bn, nn.BatchNorm3d)]
    for bn, scale, shift in bns:  # eval mode first computes scale * x + shift: the exported network
        bn.weight.copy_(scale)
        bn.bias.copy_(shift)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    sums: dict[int, list[torch.Tensor]] = {id(bn): [torch.zeros(0)] for bn, _, _ in bns}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().double()
        dims = [0, 2, 3, 4]
        sums[id(module)].append(torch.stack([x.mean(dims), (x * x).mean(dims)]))

    hooks = [bn.register_forward_pre_hook(record) for bn, _, _ in bns]
    try:
        count = _forward_all(net, batches, training=False)
    finally:
        for hook in hooks:
            hook.remove()
    if count == 0:
        raise ValueError("initial weights need at least one batch to measure the BatchNorm statistics")
    for bn, scale, shift in bns:
        moments = torch.stack(sums[id(bn)][1:]).mean(0)
        mean, var = moments[0], (moments[1] - moments[0] ** 2).clamp(min=0)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_((scale.double() * torch.sqrt(var + bn.eps)).float())
        bn.bias.copy_((shift.double() + scale.double() * mean).float())
    return count
