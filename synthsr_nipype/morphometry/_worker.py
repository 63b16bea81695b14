"""Entry point of the process that runs ANTs: ``python -m synthsr_nipype.morphometry._worker REQ RES``.

The parent sets ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` in this process' environment before
ANTs (hence ITK) is imported here; see :func:`synthsr_nipype.morphometry.ants_backend.run_isolated`.
"""

import json
import sys


def main(request: str, result: str) -> int:
    with open(request, encoding="utf-8") as f:
        req = json.load(f)
    import importlib

    from .ants_backend import ISOLATED_MODULES

    module = req.get("module", ISOLATED_MODULES[0])
    if module not in ISOLATED_MODULES:
        raise SystemExit(f"module {module!r} is not one of {ISOLATED_MODULES}")
    impl = importlib.import_module(module)
    out = getattr(impl, req["function"])(*req.get("args", []), **req.get("kwargs", {}))
    with open(result, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
