"""Bounded-memory tiled inference: tile geometry, blending weights, and agreement with whole-volume inference."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from synthsr_nipype.cli import synthsr as synthsr_cli
from synthsr_nipype.inference import (
    combine_passes,
    finish_general,
    load_volume,
    memory,
    predict,
    prepare_general,
    run,
    to_uint8,
)
from synthsr_nipype.inference.tiling import axis_tiles, axis_weights, n_tiles, tiled_forward
from synthsr_nipype.model import load_model
from tests.paths import DEVSET, MODELS, TINY

FULL = MODELS / "full_weights.h5"
FLAIR = DEVSET / "inputs" / "flair_whole.nii.gz"


@pytest.mark.parametrize("size,core,margin", [(192, 64, 32), (256, 48, 16), (160, 160, 48), (96, 32, 48),
                                              (64, 80, 16), (448, 32, 128)])
@pytest.mark.parametrize("blend", [0, 16])
def test_tiles_partition_and_weights_sum_to_one(size, core, margin, blend):
    tiles = axis_tiles(size, core, margin)
    cores = [(c0, c1) for _, _, c0, c1 in tiles]
    assert cores[0][0] == 0 and cores[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
    for t0, t1, c0, c1 in tiles:
        assert t0 % 16 == 0 and t1 % 16 == 0
        assert t0 <= c0 < c1 <= t1 and c0 - t0 <= margin and t1 - c1 <= margin
    weights, total = axis_weights(size, tiles, min(blend, margin), torch.device("cpu"))
    assert torch.allclose(total, torch.ones(size))
    for w in weights:
        assert torch.all(w >= 0) and torch.all(w <= 1)


def test_one_tile_is_the_whole_volume():
    model = load_model(TINY)
    x = torch.rand(1, 1, 64, 48, 32)
    with torch.inference_mode():
        assert torch.equal(tiled_forward(model.net, x, (64, 48, 32), 16), model.net(x))


def test_tiles_must_be_pooling_aligned():
    model = load_model(TINY)
    with pytest.raises(ValueError):
        tiled_forward(model.net, torch.rand(1, 1, 64, 64, 64), (40, 64, 64), 16)


@pytest.mark.parametrize("axis,recompute", [(0, 0), (1, 2), (2, 1)])
def test_tiles_with_the_receptive_margin_are_exact(axis, recompute):
    """Tiles much narrower than the volume, margin = receptive radius: exact up to summation order."""
    model = load_model(TINY)
    margin = memory.receptive_radius(model.spec)
    shape = [32, 32, 32]
    shape[axis] = 2 * margin + 64
    core = (32, 32, 32)
    torch.manual_seed(axis)
    x = torch.rand(1, 1, *shape)
    with torch.inference_mode():
        whole = model.net(x)
        tiled = tiled_forward(model.net, x, core, margin, slab_rows=16, recompute=recompute)
    assert n_tiles(tuple(shape), core, margin) == shape[axis] // 32
    assert float((tiled - whole).norm() / whole.norm()) < 1e-6


def test_short_margins_are_not_exact_with_random_weights():
    """Why the default margin is the whole receptive radius (documented in docs/performance.md)."""
    model = load_model(FULL)
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 128, 32)
    with torch.inference_mode():
        whole = model.net(x)
        tiled = tiled_forward(model.net, x, (32, 64, 32), 32, blend=32)
    assert float((tiled - whole).abs().max()) > 1e-3


@pytest.fixture(scope="module")
def flair_crop_input():
    """A 96x96x64 (padded) block of the whole FLAIR."""
    image = nib.load(FLAIR)
    data = np.asanyarray(image.dataobj)[40:135, 70:165, 50:113]
    cropped = nib.Nifti1Image(data, image.affine, image.header)
    return load_volume(cropped)


def test_bounded_plans_match_whole_volume_on_flair_crop(flair_crop_input):
    """Recomputed skips with thin slabs (the plans of tight bounds) against the default, to uint8."""
    model = load_model(FULL)
    prepared = prepare_general(flair_crop_input, multiple=32)
    whole = predict(model, prepared.net_input, flip=False, slab_rows=32)
    lean = predict(model, prepared.net_input, flip=False, plan=memory.InferencePlan(slab_rows=8, recompute=2))
    assert float((whole[0] - lean[0]).norm() / whole[0].norm()) < 1e-6
    a = to_uint8(finish_general(combine_passes(*whole), prepared)).astype(np.int16)
    b = to_uint8(finish_general(combine_passes(*lean), prepared)).astype(np.int16)
    changed = 100.0 * float(np.mean(a != b))
    print(f"\nrecompute=2, slabs of 8 vs default on {prepared.padded_shape}: {changed:.5f} % of uint8 voxels "
          f"changed, max {int(np.abs(a - b).max())}")
    assert changed <= 0.1 and int(np.abs(a - b).max()) <= 1


def test_run_follows_a_tiled_plan(monkeypatch):
    import synthsr_nipype.inference.pipeline as pipeline

    calls = []
    real = pipeline.tiled_forward

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    def tiled_plan(*args, **kwargs):
        return memory.InferencePlan(slab_rows=None, tile=(32, 32, 32), margin=128, estimate_gb=0.1)

    model = load_model(TINY)
    free = run(DEVSET / "inputs" / "flair_crop.nii.gz", model, device="cpu")
    monkeypatch.setattr(pipeline, "tiled_forward", counting)
    monkeypatch.setattr(pipeline.memory, "plan_inference", tiled_plan)
    image = run(DEVSET / "inputs" / "flair_crop.nii.gz", model, device="cpu", max_memory_gb=0.1)
    assert len(calls) == 2  # both TTA passes
    a = np.asanyarray(image.dataobj).astype(np.int16)
    b = np.asanyarray(free.dataobj).astype(np.int16)
    assert float(np.mean(a == b)) >= 0.999 and int(np.abs(a - b).max()) <= 1


def test_impossible_bound_warns_and_runs(caplog):
    model = load_model(TINY)
    image = run(DEVSET / "inputs" / "flair_crop.nii.gz", model, device="cpu", max_memory_gb=1e-3)
    assert image.shape == (61, 63, 59)
    assert "GB" in caplog.text
    with pytest.raises(Exception):
        run(DEVSET / "inputs" / "flair_crop.nii.gz", model, device="cpu", max_memory_gb=0)


def test_cli_max_memory_gb(tmp_path):
    out = tmp_path / "out.nii.gz"
    argv = ["--i", str(DEVSET / "inputs" / "flair_crop.nii.gz"), "--o", str(out), "--model", str(TINY),
            "--max-memory-gb", "64"]
    assert synthsr_cli.main(argv) == 0
    assert nib.load(out).shape == (61, 63, 59)
    assert synthsr_cli.main(argv[:-1] + ["0"]) == 2
