"""The BIDS schema validator (PyPI ``bids-validator-deno``, which understands derivatives)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

#: The console script of the validator installed next to this Python, or on PATH.
VALIDATOR = str(Path(sys.executable).with_name("bids-validator-deno"))
if not Path(VALIDATOR).is_file():
    VALIDATOR = shutil.which("bids-validator-deno") or VALIDATOR
AVAILABLE = Path(VALIDATOR).is_file()


def bids_validator_errors(dataset: Path) -> list[str]:
    """Errors (not warnings) the validator reports on ``dataset``, as ``CODE location``."""
    proc = subprocess.run([VALIDATOR, str(dataset), "--format", "json"], capture_output=True, text=True, check=False,
                          timeout=300)
    report = json.loads(proc.stdout)
    return [f"{issue['code']} {issue.get('location', '')}" for issue in report["issues"]["issues"]
            if issue["severity"] == "error"]
