"""Every user-facing error of the package and the exit code a command ends with for it.

Exit codes (documented in docs/cli.md and docs/bids-app.md):

* 0 -- success
* 1 -- bad input: an image that cannot be processed (the others still are), a BIDS dataset,
  label, filter or settings file that cannot be used, nothing to collect at the group level;
  or a workflow node failed; synthsr-bids: some selected scans were not processed, or it was
  interrupted (SIGINT/SIGTERM)
* 2 -- usage error or missing dependency: a model that cannot be found or downloaded,
  FreeSurfer or its licence, an optional package, a GPU that is not there
* 3 -- the model file exists but is corrupted or is not a SynthSR U-Net

Commands catch :class:`SynthSRError`, print its one-line message and return its ``exit_code``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3


class SynthSRError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = EXIT_FAILED


class InputError(SynthSRError):
    """An input (dataset, label, filter, settings file) cannot be used as given."""

    exit_code = EXIT_FAILED


class InputImageError(InputError):
    """An input image is unreadable or cannot be processed."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path) if path is not None else "<in-memory image>"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BIDSInputError(InputError, ValueError):
    """The BIDS dataset, a label or a filter cannot be used as given."""


class GroupError(InputError, RuntimeError):
    """The participant outputs cannot be put in one table (nothing found, or mixed)."""


class UsageError(SynthSRError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class DependencyError(SynthSRError):
    """A program, licence or package needed for the requested run is missing."""

    exit_code = EXIT_USAGE


class DeviceError(DependencyError):
    """The requested compute device (CUDA, MPS) is not on this machine."""


class ModelNotFoundError(SynthSRError):
    """No weight file could be located for a model name or path."""

    exit_code = EXIT_USAGE


class FetchError(SynthSRError):
    """Downloading or verifying a model failed."""

    exit_code = EXIT_USAGE


class ModelError(SynthSRError):
    """A weight file is corrupted or does not describe a SynthSR U-Net."""

    exit_code = EXIT_MODEL


class AntsError(SynthSRError, RuntimeError):
    """An ANTs step failed in its worker process."""


def report(exc: SynthSRError) -> int:
    """What every command does with a :class:`SynthSRError`: ``ERROR: <message>`` as one line on stderr
    (whatever the message quotes), then its exit code to return."""
    print("ERROR: " + " ".join(str(exc).split()), file=sys.stderr)
    return exc.exit_code


def reports_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A command's ``main`` that ends a :class:`SynthSRError` through :func:`report`: the one catch of
    the entry points (each ``main`` raises; none repeats the catch, print and return).

    >>> @reports_errors
    ... def main(argv=None):
    ...     raise UsageError("--i: no such file")
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     code = main()
    >>> code, err.getvalue().strip()
    (2, 'ERROR: --i: no such file')
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except SynthSRError as exc:
            return report(exc)

    return wrapper
