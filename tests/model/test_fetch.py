"""Model download against a local HTTP server: progress, resume with Range, SHA-256 verification."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from synthsr_nipype.cli import models as models_cli
from synthsr_nipype.errors import FetchError
from synthsr_nipype.model import registry
from synthsr_nipype.model.fetch import fetch_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = PAYLOAD
    ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).ranges.append(self.headers.get("Range"))
        if not self.path.endswith(registry.MODELS["v2"].filename):
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(self.payload):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload) - start))
        self.end_headers()
        self.wfile.write(self.payload[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(monkeypatch):
    RangeHandler.ranges = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    info = registry.MODELS["v2"]
    fake = registry.ModelInfo(info.name, info.filename, hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD), 1, "")
    monkeypatch.setitem(registry.MODELS, "v2", fake)
    yield f"http://127.0.0.1:{httpd.server_address[1]}/models/"
    httpd.shutdown()


def test_fetch_downloads_and_verifies(server, tmp_path):
    path = fetch_model("v2", dest_dir=tmp_path, base_url=server, progress=False)
    assert path == tmp_path / "synthsr_v20_230130.h5"
    assert path.read_bytes() == PAYLOAD
    assert RangeHandler.ranges == [None]


def test_fetch_resumes_a_partial_download(server, tmp_path):
    (tmp_path / "synthsr_v20_230130.h5.part").write_bytes(PAYLOAD[:300_000])
    path = fetch_model("v2", dest_dir=tmp_path, base_url=server, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert RangeHandler.ranges == ["bytes=300000-"]
    assert not (tmp_path / "synthsr_v20_230130.h5.part").exists()


def test_hash_mismatch_deletes_and_fails(server, tmp_path, monkeypatch):
    info = registry.MODELS["v2"]
    monkeypatch.setitem(registry.MODELS, "v2", registry.ModelInfo(info.name, info.filename, "0" * 64, info.size, 1, ""))
    with pytest.raises(FetchError, match="does not match"):
        fetch_model("v2", dest_dir=tmp_path, base_url=server, progress=False)
    assert list(Path(tmp_path).iterdir()) == []


def test_fetch_command_and_found_afterwards(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHSR_MODELS_DIR", str(tmp_path))
    assert models_cli.main(["fetch", "v2", "--url", server, "--dest", str(tmp_path), "--quiet"]) == 0
    assert registry.resolve_model_path("v2")[0] == tmp_path / "synthsr_v20_230130.h5"
    assert models_cli.main(["list"]) == 0
    assert str(tmp_path / "synthsr_v20_230130.h5") in capsys.readouterr().out


def test_fetch_command_unreachable_server_exits_2(tmp_path, capsys):
    code = models_cli.main(["fetch", "v1", "--url", "http://127.0.0.1:9/", "--dest", str(tmp_path), "--quiet"])
    assert code == 2
    assert "cannot download" in capsys.readouterr().err
