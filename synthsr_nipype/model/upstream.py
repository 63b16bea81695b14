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


def upstream_url(source: Upstream | None, filename: str, sha256: str | None, size: int | None) -> str | None:
    """The publisher's address of a file (a registry entry's ``upstream``, file name, SHA-256 and size), or
    None when there is nothing to download.  It takes the facts, not the registry's ``ModelInfo``: the
    registry imports this module, not the other way round.

    >>> from synthsr_nipype.model.registry import MODELS
    >>> v1 = MODELS["v1"]
    >>> upstream_url(v1.upstream, v1.filename, v1.sha256, v1.size)
    'https://raw.githubusercontent.com/freesurfer/freesurfer/dev/mri_synthsr/synthsr_v10_210712.h5'
    """
    if source is None:
        return None
    root = ORIGINS[source.origin]
    if source.path is not None:
        return root + source.path
    if sha256 is None or size is None:
        raise ValueError(f"{filename}: a git-annex object needs the file's SHA-256 and size")
    key = annex_key(sha256, size, filename)
    return f"{root}annex/objects/{hashdirlower(key)}/{key}/{key}"
