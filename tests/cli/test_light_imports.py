"""The synthsr-bids parser is torch-free: ``--help``, ``--version`` and the docs generator load no
torch, h5py, safetensors or nibabel (seconds on a cluster node; fmriprep's cli/parser.py likewise)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "h5py", "safetensors", "nibabel")

# A fresh interpreter each time: this test process has imported all of them already.
PROBE = """
import contextlib, io, json, sys
{action}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
ENTRY = """
from synthsr_nipype.cli.bids_app import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main([{flag!r}])
    except SystemExit:
        pass
"""


def _loaded(action: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(action=action, heavy=HEAVY)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_parser_module_is_torch_free():
    assert _loaded("import synthsr_nipype.cli.bids_parser") == []


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_are_torch_free(flag):
    assert _loaded(ENTRY.format(flag=flag)) == []


def test_the_probe_sees_heavy_imports():
    """The same probe reports torch where it is loaded (the test above can fail)."""
    assert "torch" in _loaded("import synthsr_nipype.model.unet")
