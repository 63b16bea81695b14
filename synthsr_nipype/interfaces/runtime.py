"""The inputs every torch-network interface shares: where it runs and on how many threads."""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, traits


class TorchRuntimeInputSpec(BaseInterfaceInputSpec):
    # where and how fast it runs does not change the result: excluded from the cache key
    device = traits.Str("auto", usedefault=True, nohash=True, desc="cpu, cuda, cuda:N, mps or auto")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="take a GPU slot in MultiProc (and run on the GPU)")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads for torch")


def node_device(inputs: TorchRuntimeInputSpec) -> str:
    """The device a node runs on: one that took a MultiProc GPU slot (``use_gpu``) runs on CUDA.

    >>> node_device(TorchRuntimeInputSpec(use_gpu=True)), node_device(TorchRuntimeInputSpec(device="cpu"))
    ('cuda', 'cpu')
    """
    if inputs.use_gpu and inputs.device in ("auto", "cpu"):
        return "cuda"
    return inputs.device
