"""Atomic writes: the package's one way to put a file in place.

Every output (images of ``synthsr``, the BIDS and morphometry derivatives, group tables and
figures, the converted-weight cache) is written to a temporary file beside its destination
and renamed over it. Participant runs may share an output folder: a reader never sees half a
file, and a crash never leaves a truncated file that a later run mistakes for a finished one.

Temporaries are named ``.<name>.<host>-<pid>.<random><suffix>``: a run killed with -9 leaves its
own, and the next run removes it (:func:`sweep_temporaries`) without touching those of a
concurrent run. A destination that already holds the bytes is left alone (same mtime).

Files get the mode a plain ``open()`` would give them (``0o666`` less the umask), not
``mkstemp``'s private ``0o600``: on a shared cluster the group reads the outputs.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it where the kernel reports it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


#: Names of temporaries: ``.<name>.<host>-<pid>.<random><suffix>`` (see :func:`sweep_temporaries`).
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9.]+)$")
#: A temporary this old belongs to no live writer, whatever host wrote it.
STALE_TEMPORARY_SECONDS = 24 * 3600


def host_label() -> str:
    """This host's name as it appears in the names of temporaries."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_temporaries(root: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Remove the temporaries that killed writers left under ``root`` (a run killed with -9 cannot
    clean up): those of processes of this host that no longer exist, and any older than a day.
    A concurrent run's temporaries (live process) are left alone. Returns the removed paths."""
    removed = []
    host, now = host_label(), time.time()
    for dirpath, dirs, files in os.walk(root):
        if not recursive:
            dirs.clear()
        for name in files:
            match = _TEMPORARY.match(name)
            if not match:
                continue
            path = Path(dirpath) / name
            try:
                old = now - path.lstat().st_mtime > STALE_TEMPORARY_SECONDS
            except FileNotFoundError:  # renamed or removed by its writer meanwhile
                continue
            if old or (match["host"] == host and not _alive(int(match["pid"]))):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def destination_of(path: str | os.PathLike[str]) -> Path:
    """The file a temporary of :func:`atomic_target` stands for (``path`` itself otherwise)."""
    path = Path(path)
    match = _TEMPORARY.match(path.name)
    if not match:
        return path
    return path.with_name(path.name[1:match.start("host") - 1])


def _tmp_beside(dest: Path, *, keep_suffix: bool) -> Path:
    """A new temporary file next to ``dest`` (same filesystem: ``os.replace`` is a rename).

    Its name starts with a dot; ``keep_suffix`` keeps ``dest``'s full suffix (``.nii.gz``)
    for writers that choose the format from it (nibabel, matplotlib), else it ends in ``.tmp``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes) if keep_suffix else ".tmp"
    # host and pid in the name: a later run tells a killed writer's leftover from a live one's
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.{host_label()}-{os.getpid()}.", suffix=suffix,
                                dir=dest.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~current_umask())
    return Path(name)


@contextmanager
def atomic_target(dest: str | os.PathLike[str], *, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``dest``, else removed.

    The mode is set again after the writer is done: some writers (safetensors) replace the file
    with one of their own, created ``0600``.
    """
    dest = Path(dest)
    tmp = _tmp_beside(dest, keep_suffix=keep_suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _unchanged(dest: Path, data: bytes) -> bool:
    """Whether ``dest`` already holds ``data``: then it is left alone (same mtime), so reruns do
    not look like changes to rsync or make."""
    try:
        return dest.stat().st_size == len(data) and dest.read_bytes() == data
    except OSError:
        return False


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    if _unchanged(Path(dest), data):
        return Path(dest)
    with atomic_target(dest, keep_suffix=False) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], data: Any) -> Path:
    """JSON as the sidecars have it: indent 2, sorted keys, a final newline."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_bytes(dest, text.encode())


def atomic_write_tsv(dest: str | os.PathLike[str], table) -> Path:
    """A pandas table as BIDS TSV: tab separated, ``n/a`` for missing values, no index."""
    return atomic_write_text(dest, table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n"))


def read_tsv(path: str | os.PathLike[str]):
    """A BIDS TSV (as :func:`atomic_write_tsv` writes it) as a pandas table: ``n/a`` is
    missing, nothing else is."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def atomic_write_nifti(dest: str | os.PathLike[str], img) -> Path:
    """A nibabel image, in the format ``dest``'s suffix names (``.nii.gz``, ``.nii``, ``.mgz``)."""
    import nibabel as nib

    with atomic_target(dest) as tmp:
        nib.save(img, str(tmp))
    return Path(dest)


def atomic_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy bytes unchanged (so reruns give byte-identical files), atomically; an identical
    ``dest`` is left alone (see :func:`_unchanged`)."""
    try:
        if Path(dest).is_file() and filecmp.cmp(src, dest, shallow=False):
            return Path(dest)
    except OSError:
        pass
    with atomic_target(dest, keep_suffix=False) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)
