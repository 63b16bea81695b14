"""The one choice of a torch device, for inference, SynthSeg and training alike."""

from __future__ import annotations

import torch

from ..errors import DeviceError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple MPS, then the CPU; a named device that is not here is a
    :class:`~synthsr_nipype.errors.DeviceError` (exit code 2).

    >>> pick_device("cpu")
    device(type='cpu')
    >>> pick_device(torch.device("cpu"))
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu or auto")
    if device == "mps" and not _mps_available():
        raise DeviceError("--device mps: Apple MPS is not available on this machine; use --device cpu or auto")
    return torch.device(device)
