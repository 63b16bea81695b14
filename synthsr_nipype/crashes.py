"""Nipype's crash files (``crash-*.txt``; the runs set ``crashfile_format = txt``): the one reader.

The console's lines after a failed run, its one-line summary and the errors section of each
subject's report all read crash files through :func:`read_crashes`, so what counts as a crash
file, its node and its error line is decided here only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Crash:
    """What one crash file says."""

    path: Path
    #: the failed node's full name (``synthsr_bids_wf.single_subject_01_wf.synthsr_T1w_wf.synthsr``); "" if absent
    node: str
    #: the last line naming an error (the exception that ended the node); "" if none does
    error: str
    #: the message of an ``InputImageError`` (``<file>: <problem>``): a scan that could not be read
    image_error: str | None
    #: the file's non-blank lines, stripped
    lines: tuple[str, ...]


def read_crash(path: str | os.PathLike[str]) -> Crash:
    """Read one crash file.

    >>> _ = Path("crash-x.txt").write_text("Node: wf.synthsr\\n\\nTraceback:\\n  ...\\nValueError: bad header\\n")
    >>> crash = read_crash("crash-x.txt")
    >>> crash.node, crash.error, crash.image_error
    ('wf.synthsr', 'ValueError: bad header', None)
    """
    path = Path(path)
    lines = tuple(ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip())
    node = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Node:")), "")
    error = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), "")
    image_error = next((ln.split("InputImageError: ", 1)[1] for ln in reversed(lines) if "InputImageError: " in ln),
                       None)
    return Crash(path=path, node=node, error=error, image_error=image_error, lines=lines)


def read_crashes(log_dir: str | os.PathLike[str]) -> list[Crash]:
    """Every crash file of a run's log folder, by name (Nipype names them by time first)."""
    return [read_crash(p) for p in sorted(Path(log_dir).glob("crash-*.txt"))]
