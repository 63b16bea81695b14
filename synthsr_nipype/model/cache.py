"""Converted-weight cache: Keras HDF5 -> safetensors, keyed by the HDF5 file's SHA-256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_target
from .card import spec_from_json, spec_to_json
from .spec import UNetSpec

CACHE_FORMAT = 1


def cache_dir() -> Path:
    if os.environ.get("SYNTHSR_CACHE_DIR"):
        return Path(os.environ["SYNTHSR_CACHE_DIR"])
    return Path(platformdirs.user_cache_dir("synthsr-nipype")) / "converted"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _entry(sha256: str) -> Path:
    return cache_dir() / f"{sha256}.v{CACHE_FORMAT}.safetensors"


def load_cached(sha256: str) -> tuple[UNetSpec, dict[str, torch.Tensor]] | None:
    """The cached spec and state dict for this h5 hash, or None (also for an unreadable entry)."""
    path = _entry(sha256)
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        return spec_from_json(meta["spec"]), load_file(str(path))
    except (OSError, KeyError, ValueError, TypeError, SafetensorError):
        return None


def store(sha256: str, spec: UNetSpec, state: dict[str, torch.Tensor]) -> None:
    """Write the entry atomically; a cache that cannot be written is not an error."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        spec_json = spec_to_json(spec)
        with atomic_target(_entry(sha256), keep_suffix=False) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"spec": spec_json})
    except OSError:
        pass
