"""Download a named model with resume, a progress bar and SHA-256 verification."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import FetchError
from .cache import sha256_file
from .registry import MODELS, ModelInfo, user_models_dir
from .upstream import upstream_url

CHUNK = 1 << 20
#: every Keras weight file is HDF5; a file without this signature is an error page or a Git LFS pointer
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def model_url(info: ModelInfo, base_url: str | None = None) -> str:
    """The address ``info`` is downloaded from.

    A mirror (``base_url``, else $SYNTHSR_MODELS_URL) holds every file under its registry file name;
    without one, the publisher's own address (model/upstream.py).
    """
    base = base_url or os.environ.get("SYNTHSR_MODELS_URL")
    if base:
        return base.rstrip("/") + "/" + info.filename
    url = upstream_url(info)
    if url is None:
        raise FetchError(f"model '{info.name}' ships with the package; there is nothing to download")
    return url


def downloadable() -> list[str]:
    """Registry names that have a publisher address."""
    return [name for name, info in MODELS.items() if info.upstream is not None]


def fetch_model(name: str, dest_dir: str | os.PathLike[str] | None = None, base_url: str | None = None,
                progress: bool = True, timeout: float = 60.0) -> Path:
    """Download model ``name`` into ``dest_dir`` (default: the user cache searched by ``load_model``).

    A partial download (``<file>.part``) is resumed with an HTTP Range request.  The finished file must match
    the registry's SHA-256 (and size) where it has one, and always be an HDF5 file; otherwise it is deleted and
    FetchError raised.  ``base_url`` names a mirror (see :func:`model_url`).
    """
    if name not in MODELS:
        raise FetchError(f"unknown model '{name}'; known: {', '.join(MODELS)}")
    info = MODELS[name]
    folder = Path(dest_dir) if dest_dir is not None else user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / info.filename
    if target.is_file() and info.sha256 and sha256_file(target) == info.sha256:
        return target
    partial = folder / (info.filename + ".part")
    url = model_url(info, base_url)
    _download(url, partial, info.size, progress, timeout)
    with open(partial, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            partial.unlink()
            raise FetchError(f"{url}: the server did not send an HDF5 file (an error page?); file deleted")
    digest = sha256_file(partial)
    if info.size is not None and partial.stat().st_size != info.size:
        size = partial.stat().st_size
        partial.unlink()
        raise FetchError(f"{url}: downloaded {size} bytes, expected {info.size}; file deleted")
    if info.sha256 is not None and digest != info.sha256:
        partial.unlink()
        raise FetchError(f"{url}: SHA-256 {digest} does not match the published {info.sha256}; file deleted")
    os.replace(partial, target)
    return target


def _download(url: str, partial: Path, size: int | None, progress: bool, timeout: float) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the partial file is complete
            return
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: cannot download ({getattr(exc, 'reason', exc)})") from None
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else size
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=partial.name.removesuffix(".part"),
                   disable=not progress, file=sys.stderr)
        try:
            with open(partial, mode) as handle:
                while block := response.read(CHUNK):
                    handle.write(block)
                    bar.update(len(block))
        except OSError as exc:
            raise FetchError(f"{url}: download interrupted ({exc}); run the command again to resume") from None
        finally:
            bar.close()
