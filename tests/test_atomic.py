"""Atomic writes: the file appears whole or not at all, with the mode the umask gives."""

from __future__ import annotations

import os

import pytest

from synthsr_nipype.atomic import atomic_target, atomic_write_bytes, current_umask


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_mode_follows_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        dest = atomic_write_bytes(tmp_path / "deep" / "x.txt", b"data")
    finally:
        os.umask(previous)
    assert dest.read_bytes() == b"data" and dest.stat().st_mode & 0o777 == mode


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    dest = tmp_path / "x.nii.gz"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_target(dest) as tmp:
        assert tmp.name.startswith(".x.nii.gz.") and tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.nii.gz"]


def test_mode_follows_the_umask_when_the_writer_replaces_the_file(tmp_path):
    """safetensors' save_file swaps in a file of its own (created 0600): the mode is set after it."""
    import torch
    from safetensors.torch import save_file

    previous = os.umask(0o022)
    try:
        with atomic_target(tmp_path / "model.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
    finally:
        os.umask(previous)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644
