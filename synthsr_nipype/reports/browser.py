"""Headless Chromium for the HTML reports: check pages as a person's browser shows them.

Text checks on the HTML cannot tell whether a linked figure actually loads or whether the page's
scripts run; rendering it in a real browser can. Used by ``tests/morphometry/test_report_browser.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable ($CHROMIUM first, then PATH), or None.

    None lets callers (tests) skip with a reason instead of failing on machines without a browser.
    """
    env = os.environ.get("CHROMIUM")
    if env:
        found = shutil.which(env)
        if found:
            return found
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _command(chromium: str, *extra: str) -> list[str]:
    # --no-sandbox: CI containers run as root; --allow-file-access-from-files: figures are file:// links;
    # --virtual-time-budget: let load handlers run before the DOM is dumped or the screenshot taken.
    return [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
            "--virtual-time-budget=5000", *extra]


def _run(html_path: str | os.PathLike[str], extra: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    page = Path(html_path).resolve()
    if chromium is None:
        raise RuntimeError(f"cannot render {page}: no chromium, chromium-browser or google-chrome on PATH "
                           "(or set $CHROMIUM)")
    if not page.is_file():
        raise RuntimeError(f"cannot render {page}: no such file")
    # a throw-away profile: no state shared between runs or with the user's browser
    with tempfile.TemporaryDirectory(prefix="synthsr-chromium-") as profile:
        cmd = _command(chromium, f"--user-data-dir={profile}", *extra, page.as_uri())
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"headless {chromium} did not finish rendering {page} in {timeout_s} s") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"headless {chromium} failed on {page} (exit {proc.returncode}):\n{tail}")
    return proc


def render_dom(html_path: str | os.PathLike[str], *, timeout_s: float = 60) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``), to assert on what a reader would see."""
    proc = _run(html_path, ["--dump-dom"], timeout_s)
    if "<html" not in proc.stdout.lower():
        raise RuntimeError(f"headless chromium returned no DOM for {Path(html_path).resolve()}")
    return proc.stdout


def screenshot(html_path: str | os.PathLike[str], png_path: str | os.PathLike[str], *, width: int = 1280,
               height: int = 2000, timeout_s: float = 60) -> Path:
    """PNG of the rendered page, to look at (or check it is not blank) without opening a browser."""
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    _run(html_path, [f"--screenshot={png}", f"--window-size={width},{height}", "--hide-scrollbars"], timeout_s)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"headless chromium wrote no screenshot of {Path(html_path).resolve()} to {png}")
    return png
