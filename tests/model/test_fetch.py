"""Model download: the publishers' addresses, and fetching against a local HTTP server laid out like them
(FreeSurfer's git-annex remote, FreeSurfer's source tree on GitHub's raw host) or like a flat mirror:
progress, resume with Range, SHA-256, size, HDF5 and layer verification; --print-url; the one-line error."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from synthsr_nipype.cli import models as models_cli
from synthsr_nipype.errors import FetchError
from synthsr_nipype.model import registry, upstream
from synthsr_nipype.model.fetch import fetch_model, model_url, where
from tests.paths import MODELS as FIXTURE_MODELS

HDF5 = b"\x89HDF\r\n\x1a\n"
PAYLOAD = HDF5 + bytes(range(256)) * 4096  # 1 MiB and a bit, starts like every Keras weight file

# The publishers' addresses, written out as published (FreeSurfer's git-annex remote: the lowfield address is
# the one a public download script uses; v1 and hyperfine: FreeSurfer's mri_synthsr/ folder, the v1 address
# as a public project records it).
ANNEX = "https://surfer.nmr.mgh.harvard.edu/pub/dist/freesurfer/repo/annex.git/annex/objects/"
V2_KEY = "SHA256E-s106163752--a472f776e7b33b5ea6e10c801f55fee488f1477a208b3e6998dc1aec1d9c5f8b.h5"
LOWFIELD_KEY = "SHA256E-s106163752--a7c5ea91c94fe31f3c716252caae0d181629201bd884dc59af88ddfd75ed4b84.h5"
PUBLISHED = {
    "v2": f"{ANNEX}f08/bc9/{V2_KEY}/{V2_KEY}",
    "lowfield": f"{ANNEX}de0/799/{LOWFIELD_KEY}/{LOWFIELD_KEY}",
    "v1": "https://raw.githubusercontent.com/freesurfer/freesurfer/dev/mri_synthsr/synthsr_v10_210712.h5",
    "hyperfine": ("https://raw.githubusercontent.com/freesurfer/freesurfer/dev/mri_synthsr/"
                  "synthsr_v10_210712_hyperfine.h5"),
}
# SynthSeg's files: git-annex SHA256E keys (size and SHA-256 of FreeSurfer's annexed files), object folders
# = first 3 / next 3 hex digits of the key's MD5 (git-annex hashdirlower, written out here independently)
_SYNTHSEG_KEYS = {
    "synthseg_2.0": "SHA256E-s53079152--f190bfd742f450ef3ca2c9df9ed4d2e0232b3a74471da5e51b7770bacdf80c3e.h5",
    "synthseg_robust_2.0":
        "SHA256E-s214606800--7bc30bf5c3d204f20c4a6cb5a283aedbcab6af1de927cda783f59b67d19cb01c.h5",
    "synthseg_parc_2.0": "SHA256E-s53090840--83bb1de76fb6f173c6dacacd433f81209fc6abb1dbc179a930ec06ecabbeb684.h5",
    "synthseg_qc_2.0": "SHA256E-s49878004--fb92e37daa0842bdd8a03bc06a3b36b0d38810e31c714659cedd09119c0abfb7.h5",
    "synthseg_robust_1.0":
        "SHA256E-s214607552--ed7c45b9fc48983a8218bff542ec2edf5ada3e28d261cec29db1d9f8d95ac8eb.h5",
}
for _name, _key in _SYNTHSEG_KEYS.items():
    _md5 = hashlib.md5(_key.encode()).hexdigest()
    PUBLISHED[_name] = f"{ANNEX}{_md5[:3]}/{_md5[3:6]}/{_key}/{_key}"
TREE = "/freesurfer/freesurfer/dev/mri_synthsr/"  # raw.githubusercontent.com/<owner>/<repo>/<branch>/<path>
#: Keras weight files with the layers of a SynthSR U-Net: 1 input channel, and the 2-channel Hyperfine layout
ONE_CHANNEL = FIXTURE_MODELS / "tiny_weights.h5"
TWO_CHANNELS = FIXTURE_MODELS / "hyperfine_tiny_weights.h5"


def test_v1_is_pinned_to_the_published_file():
    info = registry.MODELS["v1"]
    assert (info.size, info.sha256) == (
        53_075_984, "2fd59e96196388360eba95254fb6dfc9eb9eb8638018b590575e47e0a387f255")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_registry_model_has_its_published_address(name, monkeypatch):
    monkeypatch.delenv("SYNTHSR_MODELS_URL", raising=False)
    assert model_url(registry.MODELS[name]) == PUBLISHED[name]


def test_every_downloadable_registry_model_is_checked_above():
    assert sorted(n for n, info in registry.MODELS.items() if info.upstream is not None) == sorted(PUBLISHED)


class FileServer(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) with Range support; ``redirects`` (path -> path) answer 302 first."""

    files: ClassVar[dict[str, bytes]] = {}
    redirects: ClassVar[dict[str, str]] = {}
    requests: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = self.files.get(self.path)
        if payload is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(payload):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(payload) - start))
        self.end_headers()
        self.wfile.write(payload[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def http_root():
    FileServer.files, FileServer.redirects, FileServer.requests = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _with_payload(monkeypatch, name: str, payload: bytes, hashed: bool = True) -> registry.ModelInfo:
    """Registry entry ``name`` describing ``payload`` (only the real files hash to the real keys)."""
    info = registry.MODELS[name]
    digest, size = (hashlib.sha256(payload).hexdigest(), len(payload)) if hashed else (None, None)
    fake = registry.ModelInfo(info.name, info.filename, digest, size, info.in_channels, "", upstream=info.upstream)
    monkeypatch.setitem(registry.MODELS, name, fake)
    return fake


@pytest.fixture()
def publishers(http_root, monkeypatch):
    """The local server laid out like FreeSurfer's annex remote and GitHub; ORIGINS pointed at it."""
    monkeypatch.delenv("SYNTHSR_MODELS_URL", raising=False)
    monkeypatch.setitem(upstream.ORIGINS, "freesurfer-annex", http_root + "/pub/dist/freesurfer/repo/annex.git/")
    monkeypatch.setitem(upstream.ORIGINS, "freesurfer-tree", http_root + "/freesurfer/freesurfer/dev/")
    for name in ("v2", "lowfield", *_SYNTHSEG_KEYS):
        payload = PAYLOAD + name.encode()
        info = _with_payload(monkeypatch, name, payload)
        # git-annex's bare-repository layout: objects/<md5(key)[:3]>/<md5(key)[3:6]>/<key>/<key>
        key = f"SHA256E-s{len(payload)}--{info.sha256}.h5"
        md5 = hashlib.md5(key.encode()).hexdigest()
        annex = "/pub/dist/freesurfer/repo/annex.git/annex/objects"
        FileServer.files[f"{annex}/{md5[:3]}/{md5[3:6]}/{key}/{key}"] = payload
    # v1 stands for its pinned file by a hashed payload; hyperfine (no published hash) is a real 2-channel
    # U-Net weight file, since only its layers can vouch for it
    _with_payload(monkeypatch, "v1", PAYLOAD + b"v1")
    FileServer.files[f"{TREE}synthsr_v10_210712.h5"] = PAYLOAD + b"v1"
    FileServer.files[f"{TREE}synthsr_v10_210712_hyperfine.h5"] = TWO_CHANNELS.read_bytes()
    return http_root


def _served(name: str) -> bytes:
    return TWO_CHANNELS.read_bytes() if name == "hyperfine" else PAYLOAD + name.encode()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_fetch_from_the_publishers_layout(publishers, name, tmp_path):
    path = fetch_model(name, dest_dir=tmp_path, progress=False)
    assert path == tmp_path / registry.MODELS[name].filename  # saved under the name the search looks for
    assert path.read_bytes() == _served(name)
    assert [p for p in tmp_path.iterdir()] == [path]


def test_resume_from_freesurfers_tree(publishers, tmp_path):
    (tmp_path / "synthsr_v10_210712.h5.part").write_bytes(PAYLOAD[:300_000])
    path = fetch_model("v1", dest_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD + b"v1"
    assert FileServer.requests == [(f"{TREE}synthsr_v10_210712.h5", "bytes=300000-")]


def test_v1_of_the_wrong_size_is_deleted(publishers, tmp_path):
    FileServer.files[f"{TREE}synthsr_v10_210712.h5"] = PAYLOAD + b"v1 but longer"
    with pytest.raises(FetchError, match=f"downloaded {len(PAYLOAD) + 13} bytes, expected {len(PAYLOAD) + 2}"):
        fetch_model("v1", dest_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_unhashed_download_that_is_not_hdf5_is_deleted(publishers, tmp_path):
    lfs_pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
    FileServer.files[f"{TREE}synthsr_v10_210712_hyperfine.h5"] = lfs_pointer
    with pytest.raises(FetchError, match="did not send an HDF5 file"):
        fetch_model("hyperfine", dest_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("served", "problem"), [
    (PAYLOAD, "not a SynthSR weight file"),  # HDF5 signature, nothing behind it
    (ONE_CHANNEL, "1 input and 1 output channels, expected 2 and 1"),  # v1-like layers, not the Hyperfine pair
])
def test_an_unhashed_download_without_the_expected_layers_is_deleted(publishers, tmp_path, served, problem):
    FileServer.files[f"{TREE}synthsr_v10_210712_hyperfine.h5"] = (
        served.read_bytes() if isinstance(served, Path) else served)
    with pytest.raises(FetchError, match=problem):
        fetch_model("hyperfine", dest_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_command_reports_the_hash_of_an_unhashed_model(publishers, tmp_path, capsys):
    assert models_cli.main(["fetch", "hyperfine", "--dest", str(tmp_path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "fetching synthsr_v10_210712_hyperfine.h5 from 127.0.0.1" in captured.err
    assert hashlib.sha256(TWO_CHANNELS.read_bytes()).hexdigest() in captured.err
    assert "2-channel SynthSR U-Net" in captured.err
    assert captured.out.strip() == str(tmp_path / "synthsr_v10_210712_hyperfine.h5")


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_print_url_for_every_registry_model(name, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SYNTHSR_MODELS_URL", raising=False)
    assert models_cli.main(["fetch", name, "--print-url", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    print(out)
    info = registry.MODELS[name]
    assert list(tmp_path.iterdir()) == []  # nothing downloaded
    if info.bundled:
        assert "ships inside the package" in out
        assert hashlib.sha256((registry.BUNDLED_DIR / info.filename).read_bytes()).hexdigest() in out
        return
    assert f"url     {PUBLISHED[name]}\n" in out
    assert f"put it  {tmp_path / info.filename}" in out
    if info.sha256:
        assert f"sha256  {info.sha256}\n" in out
        assert f"size    {info.size:,} bytes\n" in out
    else:
        assert "sha256  not published" in out


def test_print_url_names_the_mirror(tmp_path, capsys):
    assert models_cli.main(["fetch", "v2", "--print-url", "--url", "http://mirror.example/m/"]) == 0
    assert "url     http://mirror.example/m/synthsr_v20_230130.h5\n" in capsys.readouterr().out
    assert where("v1").target == registry.user_models_dir() / "synthsr_v10_210712.h5"


def test_list_shows_the_bundled_hash_and_rounded_losses(capsys):
    assert models_cli.main(["list"]) == 0
    out = capsys.readouterr().out
    print(out)
    lite = registry.BUNDLED_DIR / "lite.safetensors"
    assert hashlib.sha256(lite.read_bytes()).hexdigest() in out
    loss = re.search(r"best validation loss (\S+) at step", out)
    assert loss is not None and len(loss.group(1)) <= 6, loss


def test_a_model_inside_the_package_has_nothing_to_fetch(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(registry.MODELS, "packaged", registry.ModelInfo("packaged", "packaged.h5", None, None, 1, ""))
    with pytest.raises(FetchError, match="ships with the package"):
        fetch_model("packaged", dest_dir=tmp_path, progress=False)
    assert models_cli.main(["fetch", "lite", "--dest", str(tmp_path)]) == 2
    assert "ships with the package" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- a mirror (--url / $SYNTHSR_MODELS_URL): every file under its registry name in one folder

@pytest.fixture()
def mirror(http_root, monkeypatch):
    info = _with_payload(monkeypatch, "v2", PAYLOAD)
    FileServer.files[f"/models/{info.filename}"] = PAYLOAD
    return http_root + "/models/"


def test_mirror_download_verifies(mirror, tmp_path):
    path = fetch_model("v2", dest_dir=tmp_path, base_url=mirror, progress=False)
    assert path == tmp_path / "synthsr_v20_230130.h5"
    assert path.read_bytes() == PAYLOAD
    assert FileServer.requests == [("/models/synthsr_v20_230130.h5", None)]


def test_mirror_from_the_environment(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSR_MODELS_URL", mirror)
    assert fetch_model("v2", dest_dir=tmp_path, progress=False).read_bytes() == PAYLOAD
    assert FileServer.requests == [("/models/synthsr_v20_230130.h5", None)]


def test_fetch_resumes_a_partial_download(mirror, tmp_path):
    (tmp_path / "synthsr_v20_230130.h5.part").write_bytes(PAYLOAD[:300_000])
    path = fetch_model("v2", dest_dir=tmp_path, base_url=mirror, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert FileServer.requests == [("/models/synthsr_v20_230130.h5", "bytes=300000-")]
    assert not (tmp_path / "synthsr_v20_230130.h5.part").exists()


def test_hash_mismatch_deletes_and_fails(mirror, tmp_path, monkeypatch):
    info = registry.MODELS["v2"]
    monkeypatch.setitem(registry.MODELS, "v2",
                        registry.ModelInfo(info.name, info.filename, "0" * 64, info.size, 1, "",
                                           upstream=info.upstream))
    with pytest.raises(FetchError, match="does not match"):
        fetch_model("v2", dest_dir=tmp_path, base_url=mirror, progress=False)
    assert list(Path(tmp_path).iterdir()) == []


def test_fetch_command_and_found_afterwards(mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHSR_MODELS_DIR", str(tmp_path))
    assert models_cli.main(["fetch", "v2", "--url", mirror, "--dest", str(tmp_path), "--quiet"]) == 0
    assert registry.resolve_model_path("v2")[0] == tmp_path / "synthsr_v20_230130.h5"
    assert models_cli.main(["list"]) == 0
    assert str(tmp_path / "synthsr_v20_230130.h5") in capsys.readouterr().out


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:9/", "127.0.0.1 refused the connection"),
    ("http://no-such-host.invalid/", "no network or unknown host no-such-host.invalid"),
])
def test_fetch_command_unreachable_server_says_what_to_do(tmp_path, capsys, url, reason):
    code = models_cli.main(["fetch", "v1", "--url", url, "--dest", str(tmp_path), "--quiet"])
    assert code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    print(error)
    assert len(error) == 1
    line = error[0]
    assert f"cannot download model 'v1' ({reason})" in line
    for hint in ("synthsr-models fetch v1 --print-url", str(tmp_path), "$SYNTHSR_MODELS_DIR", "--url"):
        assert hint in line
    assert "Errno" not in line and "synthsr_v10_210712.h5" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_says_what_to_do(publishers, tmp_path):
    del FileServer.files[f"{TREE}synthsr_v10_210712.h5"]
    with pytest.raises(FetchError, match=r"\(HTTP 404 Not Found from 127.0.0.1\); on a machine with internet"):
        fetch_model("v1", dest_dir=tmp_path, progress=False)
