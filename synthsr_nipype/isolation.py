"""ANTs steps in a fresh Python process, so that the ITK thread count is really the one asked for.

ITK fixes its thread count when it is first loaded in a process, and ANTs registration is
bit-reproducible only single-threaded with a fixed seed. Both the fusion of the BIDS-App
(:func:`synthsr_nipype.inference.fusion.fuse_images`) and the ``ants`` morphometry backend
run their ANTs work through :func:`run_isolated`: the parent sets
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` in the child's environment, the child
(``python -m synthsr_nipype.isolation REQUEST RESULT``) imports the step's module and calls
it; arguments and result travel as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .errors import AntsError

#: modules whose functions the worker process may run
STEP_MODULES = ("synthsr_nipype.morphometry.ants_steps", "synthsr_nipype.morphometry.thickness_steps",
                "synthsr_nipype.inference.fusion_ants")


def ants_version() -> str:
    try:
        return f"antspyx {version('antspyx')}"
    except PackageNotFoundError:  # pragma: no cover - antspyx is a hard dependency
        return "antspyx (unknown version)"


def run_isolated(
    module: str, function: str, *args: Any, num_threads: int = 1, **kwargs: Any
) -> dict[str, Any]:
    """Run ``<module>.<function>(*args, **kwargs)`` (``module`` one of :data:`STEP_MODULES`) in a
    new interpreter with ``num_threads`` ITK threads; :class:`~synthsr_nipype.errors.AntsError`
    when it fails."""
    if module not in STEP_MODULES:
        raise ValueError(f"run_isolated: module {module!r} is not one of {STEP_MODULES}")
    env = dict(os.environ)
    env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(num_threads))
    # ANTs' own threads are the ones that matter; keep numpy/BLAS from oversubscribing the node
    env["OMP_NUM_THREADS"] = str(int(num_threads))
    with tempfile.TemporaryDirectory(prefix="synthsr-ants-") as tmp:
        # antspyx leaves temporaries (Atropos priors/posteriors) in TMPDIR: keep them in here
        env["TMPDIR"] = tmp
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps({"module": module, "function": function, "args": list(args),
                                   "kwargs": kwargs}))
        proc = subprocess.run(
            [sys.executable, "-m", __name__, str(req), str(res)],
            env=env, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 or not res.exists():
            raise AntsError(f"ANTs step {function!r} failed (exit {proc.returncode}):\n"
                            f"{proc.stderr[-4000:]}")
        return json.loads(res.read_text())


def _worker(request: str, result: str) -> int:
    import importlib

    with open(request, encoding="utf-8") as f:
        req = json.load(f)
    module = req["module"]
    if module not in STEP_MODULES:
        raise SystemExit(f"module {module!r} is not one of {STEP_MODULES}")
    step = getattr(importlib.import_module(module), req["function"])
    out = step(*req.get("args", []), **req.get("kwargs", {}))
    with open(result, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
