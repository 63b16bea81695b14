"""The trainable U-Net and its export to the inference network."""

from __future__ import annotations

import pytest
import torch

from synthsr_nipype.model import UNet, published_spec
from synthsr_nipype.train.unet import (
    TrainableUNet,
    export_state_dict,
    recalibrate_batch_norm,
    to_inference,
)
from tests.inference.test_unet_slabs import plain_forward, rel


def trained_a_little(spec, steps: int = 3, seed: int = 0) -> TrainableUNet:
    """A net whose BatchNorm statistics and affine parameters are far from their initial values."""
    torch.manual_seed(seed)
    net = TrainableUNet(spec)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for bn in [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]:
        bn.momentum = 0.5  # move the running statistics quickly
    for _ in range(steps):
        x = torch.rand(2, spec.in_channels, 16, 16, 16) * 3 + 1
        loss = (net(x) - x[:, :1] * 0.5).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("levels,base,channels,bn", [(3, 4, 1, True), (4, 6, 2, True), (3, 4, 1, False)])
def test_exported_inference_net_matches_trainable_eval(levels, base, channels, bn):
    spec = published_spec(base, in_channels=channels, n_levels=levels, batch_norm=bn)
    net = trained_a_little(spec)
    if bn:
        assert not torch.allclose(net.bn_down[0].running_mean, torch.zeros_like(net.bn_down[0].running_mean))
    inference = to_inference(net)
    x = torch.rand(1, channels, 32, 24, 16)
    with torch.no_grad():
        expected = net(x)
    with torch.inference_mode():
        got = inference(x)
        got_slabs = inference(x, slab_rows=8)
        keras_order = plain_forward(inference, x)
    assert got.shape == expected.shape == (1, 1, 32, 24, 16)
    assert rel(got, expected) < 1e-5
    assert rel(got_slabs, expected) < 1e-5
    assert rel(keras_order, expected) < 1e-5


def test_export_has_exactly_the_inference_keys():
    spec = published_spec(4, n_levels=3)
    state = export_state_dict(TrainableUNet(spec))
    reference = UNet(spec).state_dict()
    assert set(state) == set(reference)
    assert all(state[k].shape == reference[k].shape for k in state)


def test_batch_norm_uses_keras_constants():
    net = TrainableUNet(published_spec(4, n_levels=3))
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bns) == 5 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


def test_training_mode_gradients_reach_every_parameter():
    torch.manual_seed(1)
    net = TrainableUNet(published_spec(4, n_levels=3)).train()
    net(torch.rand(2, 1, 16, 16, 16)).abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_recalibration_averages_the_statistics_over_the_batches():
    torch.manual_seed(2)
    net = trained_a_little(published_spec(4, n_levels=3))
    seen = []
    hook = net.bn_down[0].register_forward_hook(lambda m, args, out: seen.append(args[0].mean(dim=(0, 2, 3, 4))))
    batches = [torch.rand(1, 1, 16, 16, 16) * (i + 1) for i in range(3)]
    assert recalibrate_batch_norm(net, iter(batches)) == 3
    hook.remove()
    assert torch.allclose(net.bn_down[0].running_mean, torch.stack(seen).mean(0), atol=1e-6)
    assert not net.training and all(m.momentum == 0.5 for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))


@pytest.mark.parametrize("shape", [(16, 16, 16), (24, 16, 32)])
def test_parity_decoder_equals_the_concatenation_with_its_gradients(shape):
    """The decoder's first convolutions run on the low-resolution grid (one 2x2x2 kernel per parity): the
    output and every parameter's gradient equal those of the plain concatenating network."""
    torch.manual_seed(0)
    net = TrainableUNet(published_spec(4, n_levels=3)).train()
    x = torch.rand(2, 1, *shape)
    fast = net(x)
    grads_fast = torch.autograd.grad(fast.square().sum(), list(net.parameters()))
    plain = plain_forward(net, x)
    grads_plain = torch.autograd.grad(plain.square().sum(), list(net.parameters()))
    errors = [rel(a, b) for a, b in zip(grads_fast, grads_plain)]
    output_error = rel(fast.detach(), plain.detach())
    print(f"output rel. error {output_error:.2e}, largest gradient rel. error {max(errors):.2e}")
    assert output_error < 1e-5 and max(errors) < 1e-4
