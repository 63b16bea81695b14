"""The fast U-Net forward (channels-last, oneDNN, parity-split decoder convolutions, slabs) against a plain one.

The plain forward below is the network as Keras evaluates it: concatenation, nearest upsampling, ``F.conv3d``.
Everything is float32, so agreement is to summation order (relative L2 well under 1e-5).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from synthsr_nipype.model import UNet, UNetSpec, load_model
from synthsr_nipype.model.unet import add_parity_, conv3d, parity_kernel
from tests.paths import MODELS, TINY

REL = 1e-5


def spec(levels: int = 3, base: int = 4, kernel: int = 3, convs: int = 2, cin: int = 1, bn: bool = True) -> UNetSpec:
    down = tuple(tuple([base * 2**i] * convs) for i in range(levels))
    up = tuple(tuple([base * 2**i] * convs) for i in reversed(range(levels - 1)))
    return UNetSpec(prefix="unet", n_levels=levels, convs_per_level=convs, kernel_size=kernel, in_channels=cin,
                    out_channels=1, down_widths=down, up_widths=up, batch_norm=bn)


def random_net(s: UNetSpec, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(s)
    for name, buf in net.named_buffers():
        if name.endswith("_scale"):
            buf.copy_(torch.rand_like(buf) + 0.5)
        else:
            buf.copy_(torch.randn_like(buf) * 0.1)
    return net.eval().requires_grad_(False)


def plain_forward(net: UNet, x: torch.Tensor) -> torch.Tensor:
    """Keras-order evaluation: no splitting, no slabs, NCDHW.  ``net`` may also be the trainable network
    (``train.unet.TrainableUNet``), whose BatchNorm modules then apply (batch statistics in training mode)."""
    s = net.spec

    def bn(name: str, t: torch.Tensor) -> torch.Tensor:
        if not s.batch_norm:
            return t
        if isinstance(getattr(net, "bn_down", None), torch.nn.ModuleList):
            kind, index = name.rsplit("_", 1)
            return getattr(net, kind)[int(index)](t)
        scale = getattr(net, f"{name}_scale").view(1, -1, 1, 1, 1)
        shift = getattr(net, f"{name}_shift").view(1, -1, 1, 1, 1)
        return t * scale + shift

    skips = []
    for level in range(s.n_levels):
        for conv in net.down[level]:
            x = F.elu(F.conv3d(x, conv.weight, conv.bias, padding=s.kernel_size // 2))
        if level < s.n_levels - 1:
            skips.append(x)
            x = F.max_pool3d(bn(f"bn_down_{level}", x), 2)
        else:
            x = bn(f"bn_down_{level}", x)
    for k in range(s.n_levels - 1):
        x = torch.cat([skips.pop(), F.interpolate(x, scale_factor=2, mode="nearest")], dim=1)
        for conv in net.up[k]:
            x = F.elu(F.conv3d(x, conv.weight, conv.bias, padding=s.kernel_size // 2))
        x = bn(f"bn_up_{k}", x)
    return F.conv3d(x, net.likelihood.weight, net.likelihood.bias)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("rows", [None, 16, 8, 6, 2, 5, 1000])
def test_slabs_match_plain_forward(rows):
    net = random_net(spec())
    x = torch.rand(1, 1, 32, 24, 16)
    with torch.inference_mode():
        expected = plain_forward(net, x)
        got = net(x, slab_rows=rows)
    assert got.shape == expected.shape
    assert rel(got, expected) < REL


@pytest.mark.parametrize("s", [spec(levels=4, base=3), spec(levels=2, base=5, cin=2), spec(bn=False),
                               spec(convs=3), spec(kernel=5, levels=2)],
                         ids=["4levels", "2ch", "nobn", "3convs", "kernel5"])
def test_other_architectures(s):
    net = random_net(s, seed=1)
    x = torch.rand(1, s.in_channels, 32, 16, 24)
    with torch.inference_mode():
        expected = plain_forward(net, x)
        for rows in (None, 8):
            assert rel(net(x, slab_rows=rows), expected) < REL


def test_batch_of_two_equals_two_passes():
    net = random_net(spec())
    x = torch.rand(2, 1, 16, 32, 16)
    with torch.inference_mode():
        both = net(x)
        for i in range(2):
            assert rel(both[i : i + 1], net(x[i : i + 1])) < REL


def test_parity_kernel_is_the_upsampled_convolution():
    torch.manual_seed(3)
    low = torch.randn(2, 5, 4, 6, 3)
    weight = torch.randn(7, 5, 3, 3, 3)
    expected = F.conv3d(F.interpolate(low, scale_factor=2, mode="nearest"), weight, padding=1)
    padded = F.pad(low, (0, 0, 0, 0, 1, 1))  # rows: zero row on each side; Y, Z through the conv padding
    parity = conv3d(padded.contiguous(memory_format=torch.channels_last_3d),
                    parity_kernel(weight).contiguous(memory_format=torch.channels_last_3d), None, padding=(0, 1, 1))
    got = torch.zeros_like(expected).contiguous(memory_format=torch.channels_last_3d)
    add_parity_(got, parity)
    assert rel(got, expected) < REL


def test_small_volumes_use_onednn_not_slow_conv3d():
    """``F.conv3d`` sends batch-1 volumes with N*C*X*Y <= 20480 to slow_conv3d; the fast path never does."""
    net = random_net(spec())
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        net(x)
    names = {e.key for e in prof.key_averages()}
    assert "aten::slow_conv3d_forward" not in names


def test_weights_cache_follows_parameter_changes():
    net = random_net(spec())
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.inference_mode():
        before = net(x)
    with torch.no_grad():
        net.likelihood.bias.add_(1.0)
    with torch.inference_mode():
        after = net(x)
    assert torch.allclose(after, before + 1.0, atol=1e-5)


def test_bf16_runs_close():
    net = random_net(spec())
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.inference_mode():
        expected = net(x)
        got = net(x.to(torch.bfloat16)).float()
    assert rel(got, expected) < 5e-2


def test_tiny_model_slabs_match_whole():
    model = load_model(TINY)
    x = torch.rand(1, 1, 64, 32, 48)
    with torch.inference_mode():
        whole = model.net(x)
        assert rel(model.net(x, slab_rows=16), whole) < REL
        assert rel(model.net(x, slab_rows=10), whole) < REL


def test_hyperfine_model_slabs_match_whole():
    model = load_model(MODELS / "hyperfine_tiny_weights.h5")
    x = torch.rand(1, 2, 32, 48, 32)
    with torch.inference_mode():
        assert rel(model.net(x, slab_rows=8), plain_forward(model.net, x)) < REL
