"""Where each publisher serves its SynthSR weights, and the rule that turns a registry entry into that address.

FreeSurfer keeps ``synthsr_v20_230130.h5`` and ``synthsr_lowfield_v20_230130.h5`` in its public git-annex
remote (a bare repository, so objects live under git-annex's ``hashdirlower`` folders); v1
(``synthsr_v10_210712.h5``) and the Hyperfine model (``synthsr_v10_210712_hyperfine.h5``) are plain files in
the ``mri_synthsr/`` folder of FreeSurfer's source tree (freesurfer/freesurfer on GitHub, installed by
``mri_synthsr/CMakeLists.txt``), served by GitHub's raw host. (BBillot/SynthSR's ``models/`` entries for them
are git symlinks to a private cluster path: not a home for the weights.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import ModelInfo

#: Publisher name -> the root its paths are relative to.  Tests point these at a local server laid out the same.
ORIGINS: dict[str, str] = {
    "freesurfer-annex": "https://surfer.nmr.mgh.harvard.edu/pub/dist/freesurfer/repo/annex.git/",
    "freesurfer-tree": "https://raw.githubusercontent.com/freesurfer/freesurfer/dev/",
}


@dataclass(frozen=True)
class Upstream:
    """A model's home: ``origin`` names an entry of ORIGINS; ``path`` is the file under it.

    ``path`` is None for a git-annex origin: the object's path follows from the file's SHA-256 and size.
    """

    origin: str
    path: str | None = None


def annex_key(sha256: str, size: int, filename: str) -> str:
    """git-annex's SHA256E key: backend, size, hash and the file's extension."""
    return f"SHA256E-s{size}--{sha256}{PurePosixPath(filename).suffix}"


def hashdirlower(key: str) -> str:
    """git-annex's object folder in bare repositories: first 3 / next 3 hex digits of the key's MD5."""
    digest = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:3]}/{digest[3:6]}"


def upstream_url(info: ModelInfo) -> str | None:
    """The publisher's address for a registry entry, or None when there is nothing to download."""
    source = info.upstream
    if source is None:
        return None
    root = ORIGINS[source.origin]
    if source.path is not None:
        return root + source.path
    if info.sha256 is None or info.size is None:
        raise ValueError(f"model '{info.name}': a git-annex object needs the file's SHA-256 and size")
    key = annex_key(info.sha256, info.size, info.filename)
    return f"{root}annex/objects/{hashdirlower(key)}/{key}/{key}"
