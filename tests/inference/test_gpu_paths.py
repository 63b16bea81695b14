"""The GPU-only code paths, exercised on the CPU: both TTA passes as one batch, and the out-of-memory
fallback (tiles sized from the free memory, then the CPU).

CI has no GPU, so a CUDA device is simulated: the model claims ``cuda`` and the network call raises
``torch.OutOfMemoryError`` as many times as a test asks before computing on the CPU. What is checked is
the control flow and that every fallback returns what the plain CPU run returns.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from synthsr_nipype.inference import memory, pipeline
from synthsr_nipype.model import load_model
from tests.inference.test_unet_slabs import REL, rel
from tests.paths import TINY

SHAPE = (96, 64, 64)


@pytest.fixture(scope="module")
def model():
    return load_model(TINY)


@pytest.fixture(scope="module")
def net_input():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((1, 1, 12, 8, 8), generator=generator)
    # smooth, brain-sized structure rather than white noise: upsampled random blocks
    x = torch.nn.functional.interpolate(x, size=SHAPE, mode="trilinear", align_corners=False)
    return x.contiguous()


@pytest.fixture(scope="module")
def expected(model, net_input):
    return pipeline.predict(model, net_input, flip=True, slab_rows=None)


class FakeCuda:
    """Stands in for ``_predict_on``: records each call, fails the first ``failures`` CUDA ones."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict] = []
        self.real = pipeline._predict_on

    def __call__(self, net, device, net_input, **kwargs):
        self.calls.append({"net": net, "device": device, **kwargs})
        if device.type == "cuda":
            if sum(c["device"].type == "cuda" for c in self.calls) <= self.failures:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (simulated)")
            device = torch.device("cpu")
        return self.real(net, device, net_input, **kwargs)


@pytest.fixture()
def on_fake_cuda(monkeypatch, model):
    free_bytes = 64 * memory.GIB // 1024  # 64 MiB: forces tiles for SHAPE
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_bytes, 80 * memory.GIB))

    def install(failures: int) -> tuple[FakeCuda, object]:
        fake = FakeCuda(failures)
        monkeypatch.setattr(pipeline, "_predict_on", fake)
        return fake, dataclasses.replace(model, device=torch.device("cuda"))

    return install


def test_both_passes_as_one_batch_equal_two_passes(model, net_input, expected):
    got = pipeline._predict_on(model.net, torch.device("cpu"), net_input, flip=True, slab_rows=None, plan=None,
                               precision="fp32", batch_passes=True)
    assert got[0].shape == expected[0].shape == (1, 1, *SHAPE)
    print(f"batched TTA vs two passes: rel L2 {rel(got[0], expected[0]):.1e}, {rel(got[1], expected[1]):.1e}")
    assert rel(got[0], expected[0]) < REL and rel(got[1], expected[1]) < REL


def test_cuda_batches_the_passes(on_fake_cuda, net_input, expected):
    fake, cuda_model = on_fake_cuda(failures=0)
    got = pipeline.predict(cuda_model, net_input, flip=True)
    assert [c["batch_passes"] for c in fake.calls] == [True]
    assert rel(got[0], expected[0]) < REL and rel(got[1], expected[1]) < REL


def test_out_of_memory_retries_in_tiles(on_fake_cuda, net_input, expected, caplog):
    fake, cuda_model = on_fake_cuda(failures=1)
    with caplog.at_level(logging.WARNING, logger=pipeline.log.name):
        got = pipeline.predict(cuda_model, net_input, flip=True)
    assert [c["device"].type for c in fake.calls] == ["cuda", "cuda"]
    retry = fake.calls[1]
    assert retry["plan"].tiled and retry["plan"].tile != SHAPE and not retry["batch_passes"]
    assert "retrying in tiles" in caplog.text
    print(f"OOM -> tiles {retry['plan'].tile}: rel L2 {rel(got[0], expected[0]):.1e}")
    assert rel(got[0], expected[0]) < REL and rel(got[1], expected[1]) < REL


def test_out_of_memory_in_tiles_falls_back_to_the_cpu(on_fake_cuda, model, net_input, expected, caplog):
    fake, cuda_model = on_fake_cuda(failures=2)
    with caplog.at_level(logging.WARNING, logger=pipeline.log.name):
        got = pipeline.predict(cuda_model, net_input, flip=True, precision="bf16")
    assert [c["device"].type for c in fake.calls] == ["cuda", "cuda", "cpu"]
    last = fake.calls[2]
    # a CPU replica (the GPU copy stays where it is), IEEE fp32 whatever was asked for the GPU
    assert last["net"] is not cuda_model.net and last["precision"] == "fp32"
    assert "falling back to the CPU" in caplog.text
    assert got[0].device.type == "cpu"
    assert rel(got[0], expected[0]) < REL and rel(got[1], expected[1]) < REL


def test_out_of_memory_on_the_cpu_is_not_swallowed(monkeypatch, model, net_input):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(pipeline, "_predict_on", exhausted)
    with pytest.raises(torch.OutOfMemoryError):
        pipeline.predict(model, net_input, flip=True)


def test_unknown_precision_is_refused(model, net_input):
    with pytest.raises(Exception, match="precision must be one of"):
        pipeline.predict(model, net_input, flip=False, precision="fp16")
