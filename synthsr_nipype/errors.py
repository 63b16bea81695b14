"""Exceptions that carry the exit code a command should end with.

Exit codes (documented in docs/cli.md):

* 0 -- success
* 1 -- at least one input image could not be processed (bad file, header or content)
* 2 -- usage error or missing dependency, e.g. a model file that cannot be found
* 3 -- the model file exists but is corrupted or is not a SynthSR U-Net
"""

from __future__ import annotations


class SynthSRError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = 1


class InputImageError(SynthSRError):
    """An input image is unreadable or cannot be processed."""

    exit_code = 1

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path) if path is not None else "<in-memory image>"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelNotFoundError(SynthSRError):
    """No weight file could be located for a model name or path."""

    exit_code = 2


class ModelError(SynthSRError):
    """A weight file is corrupted or does not describe a SynthSR U-Net."""

    exit_code = 3


class FetchError(SynthSRError):
    """Downloading or verifying a model failed."""

    exit_code = 2
