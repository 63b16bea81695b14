"""Download a named model with resume, a progress bar and SHA-256 verification."""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from ..errors import FetchError, ModelError
from .cache import sha256_file
from .keras_h5 import infer_spec, read_layers
from .registry import BUNDLED_DIR, MODELS, ModelInfo, user_models_dir
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
    url = upstream_url(info.upstream, info.filename, info.sha256, info.size)
    if url is None:
        raise FetchError(f"model '{info.name}' ships with the package; there is nothing to download")
    return url


@dataclass(frozen=True)
class Where:
    """What to fetch by hand and where to put it (``synthsr-models fetch NAME --print-url``).

    ``url`` is None for a model that ships with the package; ``sha256``/``size`` are the published ones
    (for the bundled model, the installed file's own SHA-256).
    """

    name: str
    url: str | None
    size: int | None
    sha256: str | None
    target: Path

    def lines(self) -> list[str]:
        info = MODELS[self.name]
        if self.url is None:
            return [f"{self.name}: ships inside the package, nothing to download",
                    f"file    {self.target}",
                    f"sha256  {self.sha256 or '(file missing: reinstall synthsr-nipype)'}"]
        unhashed = (f"not published (the download must be a Keras HDF5 file holding the "
                    f"{info.in_channels}-channel SynthSR U-Net; its SHA-256 is printed)")
        return [f"{self.name}: {info.filename}",
                f"url     {self.url}",
                f"size    {f'{self.size:,} bytes' if self.size is not None else 'not published'}",
                f"sha256  {self.sha256 or unhashed}",
                f"put it  {self.target}  (or in a folder named by $SYNTHSR_MODELS_DIR)"]


def where(name: str, dest_dir: str | os.PathLike[str] | None = None, base_url: str | None = None) -> Where:
    """The address, size, SHA-256 and destination of registry model ``name``: every name, bundled too."""
    if name not in MODELS:
        raise FetchError(f"unknown model '{name}'; known: {', '.join(MODELS)}")
    info = MODELS[name]
    if info.bundled:
        target = BUNDLED_DIR / info.filename
        digest = info.sha256 or (sha256_file(target) if target.is_file() else None)
        return Where(name, None, info.size, digest, target)
    folder = Path(dest_dir) if dest_dir is not None else user_models_dir()
    return Where(name, model_url(info, base_url), info.size, info.sha256, folder / info.filename)


def fetch_model(name: str, dest_dir: str | os.PathLike[str] | None = None, base_url: str | None = None,
                progress: bool = True, timeout: float = 60.0) -> Path:
    """Download model ``name`` into ``dest_dir`` (default: the user cache searched by ``load_model``).

    A partial download (``<file>.part``) is resumed with an HTTP Range request.  The finished file must be
    an HDF5 file and match the registry's SHA-256 and size where it has them; without a published hash it
    must hold a SynthSR U-Net with the model's number of input channels.  Otherwise it is deleted and
    FetchError raised.  ``base_url`` names a mirror (see :func:`model_url`).  A download that cannot
    start raises a one-line FetchError saying how to fetch the file by hand.
    """
    if name not in MODELS:
        raise FetchError(f"unknown model '{name}'; known: {', '.join(MODELS)}")
    info = MODELS[name]
    folder = Path(dest_dir) if dest_dir is not None else user_models_dir()
    target = folder / info.filename
    if target.is_file() and info.sha256 and sha256_file(target) == info.sha256:
        return target
    url = model_url(info, base_url)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (info.filename + ".part")
    try:
        _download(url, partial, info.size, progress, timeout)
    except _Unreachable as exc:
        raise FetchError(
            f"cannot download model '{name}' ({exc}); on a machine with internet run "
            f"'synthsr-models fetch {name} --print-url', fetch that file and put it in {folder} "
            f"(or in $SYNTHSR_MODELS_DIR), or name a mirror with --url") from None
    _verify(info, url, partial)
    os.replace(partial, target)
    return target


def _verify(info: ModelInfo, url: str, partial: Path) -> None:
    """Delete ``partial`` and raise FetchError unless it is the file ``info`` describes."""
    def reject(problem: str) -> NoReturn:
        partial.unlink()
        raise FetchError(f"{url}: {problem}; file deleted")

    with open(partial, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            reject("the server did not send an HDF5 file (an error page?)")
    size = partial.stat().st_size
    if info.size is not None and size != info.size:
        reject(f"downloaded {size} bytes, expected {info.size}")
    if info.sha256 is not None:
        digest = sha256_file(partial)
        if digest != info.sha256:
            reject(f"SHA-256 {digest} does not match the published {info.sha256}")
        return
    try:  # no published hash: the layers must be the model's U-Net
        spec = infer_spec(read_layers(partial), partial)
    except ModelError as exc:
        reject(f"not a SynthSR weight file ({str(exc).removeprefix(f'{partial}: ')})")
    if spec.in_channels != info.in_channels or spec.out_channels != 1:
        reject(f"a U-Net with {spec.in_channels} input and {spec.out_channels} output channels, "
               f"expected {info.in_channels} and 1 for model '{info.name}'")


class _Unreachable(Exception):
    """The server could not be reached (no network, unknown host, refused, timed out)."""


def _reason(url: str, exc: BaseException) -> str:
    """A short reason for a failed connection: no OS error numbers, the host rather than the whole URL."""
    host = urllib.parse.urlsplit(url).hostname or url
    cause = getattr(exc, "reason", exc)
    if isinstance(cause, socket.gaierror):
        return f"no network or unknown host {host}"
    if isinstance(cause, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return f"{host} did not answer in time"
    text = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return f"{host}: {text}"


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
        host = urllib.parse.urlsplit(url).hostname or url
        raise _Unreachable(f"HTTP {exc.code} {exc.reason} from {host}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Unreachable(_reason(url, exc)) from None
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
