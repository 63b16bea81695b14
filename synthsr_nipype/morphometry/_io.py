"""The morphometry layer's atomic writers: the package's one set, in
:mod:`synthsr_nipype.bids.derivatives` (re-exported here for the morphometry modules)."""

from __future__ import annotations

from ..bids.derivatives import (  # noqa: F401
    atomic_copy,
    atomic_target,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_nifti,
    atomic_write_text,
    atomic_write_tsv,
    read_tsv,
)

__all__ = [
    "atomic_copy", "atomic_target", "atomic_write_bytes", "atomic_write_json", "atomic_write_nifti",
    "atomic_write_text", "atomic_write_tsv", "read_tsv",
]
