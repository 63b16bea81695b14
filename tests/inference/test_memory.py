"""The cost model: FLOPs, memory estimates, plans under a bound, thread advice, allocator tuning."""

from __future__ import annotations

import pytest

from synthsr_nipype.inference import memory
from synthsr_nipype.model import load_model
from tests.paths import MODELS, TINY

FLAIR_PADDED = (192, 256, 160)


@pytest.fixture(scope="module")
def full_spec():
    return load_model(MODELS / "full_weights.h5").spec


@pytest.fixture(scope="module")
def tiny_spec():
    return load_model(TINY).spec


def test_published_flops_per_voxel(full_spec):
    assert memory.flops_per_voxel(full_spec) == pytest.approx(0.31e6, rel=0.01)
    executed = memory.flops_per_voxel(full_spec, executed=True)
    assert executed < 0.75 * memory.flops_per_voxel(full_spec)
    total = memory.network_flops(FLAIR_PADDED, full_spec, passes=2)
    assert total == pytest.approx(2 * 192 * 256 * 160 * memory.flops_per_voxel(full_spec))


def test_estimates_are_ordered(full_spec):
    slabs = memory.estimate_memory_gb(FLAIR_PADDED, full_spec, "cpu")
    whole = memory.estimate_memory_gb(FLAIR_PADDED, full_spec, "cpu", slab_rows=None)
    thin = memory.estimate_memory_gb(FLAIR_PADDED, full_spec, "cpu", slab_rows=8)
    assert thin < slabs < whole
    assert slabs <= 0.4 * 7.1  # the target for this input
    small = memory.estimate_memory_gb((64, 64, 64), full_spec, "cpu")
    assert small < slabs
    gpu = memory.estimate_memory_gb(FLAIR_PADDED, full_spec, "cuda")
    gpu_bf16 = memory.estimate_memory_gb(FLAIR_PADDED, full_spec, "cuda", bf16=True)
    assert gpu_bf16 < gpu
    assert memory.estimate_memory_gb(FLAIR_PADDED, full_spec, "cuda", tta=False) < gpu


def test_estimate_memory_gb_signature_for_nipype(tiny_spec):
    value = memory.estimate_memory_gb((64, 64, 64), tiny_spec, "cpu")
    assert isinstance(value, float) and 0.1 < value < 2


def test_plan_without_bound_is_the_default(full_spec, tiny_spec):
    plan = memory.plan_inference(FLAIR_PADDED, full_spec, "cpu")
    assert plan.slab_rows == memory.DEFAULT_SLAB_ROWS and not plan.tiled
    assert memory.plan_inference((64, 64, 64), tiny_spec, "cpu").slab_rows is None
    assert memory.plan_inference(FLAIR_PADDED, full_spec, "cuda").slab_rows is None


@pytest.mark.parametrize("bound", [10.0, 2.4, 2.0, 1.6, 1.3, 1.2])
def test_plan_under_a_bound(full_spec, bound):
    plan = memory.plan_inference(FLAIR_PADDED, full_spec, "cpu", max_memory_gb=bound)
    assert plan.estimate_gb <= bound
    if plan.tiled:
        assert all(c % 16 == 0 and c >= memory.MIN_TILE for c in plan.tile)
        assert plan.margin >= memory.receptive_radius(full_spec)
    looser = memory.plan_inference(FLAIR_PADDED, full_spec, "cpu", max_memory_gb=bound * 1.5)
    assert looser.estimate_gb >= plan.estimate_gb
    assert looser.recompute <= plan.recompute


def test_plans_prefer_recomputing_to_tiles(full_spec):
    plan = memory.plan_inference(FLAIR_PADDED, full_spec, "cpu", max_memory_gb=1.6)
    assert plan.recompute >= 1 and not plan.tiled


def test_large_volumes_tile(full_spec):
    shape = (512, 512, 384)
    plan = memory.plan_inference(shape, full_spec, "cpu", max_memory_gb=4.0)
    assert plan.tiled and plan.estimate_gb <= 4.0


def test_receptive_radius(full_spec, tiny_spec):
    assert memory.receptive_radius(full_spec) == 128  # 122 rounded up to the pooling unit
    assert memory.receptive_radius(tiny_spec) == 128  # depends on depth and kernels, not on widths


def test_impossible_bound_returns_the_smallest_plan(full_spec):
    plan = memory.plan_inference(FLAIR_PADDED, full_spec, "cpu", max_memory_gb=0.01)
    assert plan.estimate_gb > 0.01
    others = [memory.plan_inference(FLAIR_PADDED, full_spec, "cpu", max_memory_gb=b) for b in (1.2, 1.6, 3.0)]
    assert all(plan.estimate_gb <= o.estimate_gb for o in others)


def test_gpu_tile_plan_shrinks_with_free_memory(full_spec):
    roomy = memory.gpu_tile_plan(FLAIR_PADDED, full_spec, free_bytes=80 * memory.GIB)
    tight = memory.gpu_tile_plan(FLAIR_PADDED, full_spec, free_bytes=2 * memory.GIB)
    assert all(a >= b for a, b in zip(roomy.tile, tight.tile))
    assert tight.tile != roomy.tile
    assert roomy.tile == FLAIR_PADDED  # an H100 holds the whole FLAIR
    # after an out-of-memory error the retry must not be the size that failed
    retry = memory.gpu_tile_plan(FLAIR_PADDED, full_spec, free_bytes=80 * memory.GIB, split=True)
    assert retry.tile != FLAIR_PADDED and all(a <= b for a, b in zip(retry.tile, FLAIR_PADDED))


def test_thread_advice(tiny_spec, full_spec):
    assert memory.estimate_threads((64, 64, 64), tiny_spec, available=16) == 1
    assert memory.estimate_threads(FLAIR_PADDED, full_spec, available=2) == 2
    assert memory.estimate_threads(FLAIR_PADDED, full_spec, available=64) >= 4


def test_tune_allocator_is_opt_in_and_idempotent(monkeypatch):
    monkeypatch.setattr(memory, "_TUNED", False)
    monkeypatch.delenv("SYNTHSR_MALLOC_TUNING", raising=False)
    assert memory.tune_allocator() is False and memory._TUNED is False
    monkeypatch.setenv("SYNTHSR_MALLOC_TUNING", "1")
    assert isinstance(memory.tune_allocator(), bool)
    assert memory.tune_allocator() is False  # second call does nothing


def test_unreachable_bound_warns_and_still_runs(caplog):
    import logging

    import numpy as np

    from synthsr_nipype.inference import run
    from tests.paths import DEVSET

    crop = DEVSET / "inputs" / "flair_crop.nii.gz"
    with caplog.at_level(logging.WARNING, logger="synthsr_nipype.inference.pipeline"):
        bounded = run(str(crop), model=str(TINY), device="cpu", max_memory_gb=0.05)
    assert "over the bound of 0.05 GB" in caplog.text
    whole = run(str(crop), model=str(TINY), device="cpu")
    assert np.array_equal(np.asanyarray(bounded.dataobj), np.asanyarray(whole.dataobj))
