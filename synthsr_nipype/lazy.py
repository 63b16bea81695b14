"""Package namespaces that import a submodule only when one of its names is used.

``import synthsr_nipype.bids.query`` runs ``synthsr_nipype/bids/__init__.py`` first; if that
imported every submodule, a parser that needs one constant would load torch, h5py and nibabel
(seconds, and a failure where they are missing). A package's ``__init__`` therefore lists its
public names and the submodule that holds each; :func:`lazy_exports` resolves them on first use
(PEP 562), so ``from synthsr_nipype.bids import build_plan`` still works.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule) on demand.

    >>> getattr_ = lazy_exports("synthsr_nipype.bids", {"DEFAULT_SUFFIXES": "query"})
    >>> getattr_("DEFAULT_SUFFIXES")[:2]
    ('T1w', 'T2w')
    >>> getattr_("nothing")
    Traceback (most recent call last):
    ...
    AttributeError: module 'synthsr_nipype.bids' has no attribute 'nothing'
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    return __getattr__
