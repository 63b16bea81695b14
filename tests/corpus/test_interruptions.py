"""Runs that end early: kill -9 and SIGTERM while synthsr-bids runs SynthSR, fuses, or writes
derivatives, and a full disk (output or work directory); then rerun: the outputs are byte-identical
to an uninterrupted run, no temporary file is left in output_dir and no scratch folder in $TMPDIR
(multiprocessing's, ANTs', fusion's: they go to the work dir, swept by the next start). Also: reruns leave identical
outputs untouched, MultiProc is quiet without -v."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthsr_nipype.atomic import host_label
from tests.console import PROGRESS, messages
from tests.paths import TINY

from .build import _image, _sidecar
from .test_corpus import _assert_nothing_partial

pytestmark = pytest.mark.skipif(not TINY.is_file(), reason="tiny fixture model (../shared) not available")


def _dataset(root: Path) -> Path:
    bids = root / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "kill", "BIDSVersion": "1.9.0"}')
    for rel, seed, zooms in (("sub-01/anat/sub-01_T1w.nii.gz", 1, (1.6, 1.6, 5.0)),
                             ("sub-01/anat/sub-01_T2w.nii.gz", 2, (1.4, 1.4, 6.0)),
                             ("sub-02/anat/sub-02_FLAIR.nii.gz", 3, (1.6, 1.6, 5.0))):
        path = bids / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _image(seed, zooms=zooms).to_filename(path)
        _sidecar(path)
    return bids


def _command(bids: Path, out: Path, work: Path, nprocs: int = 1) -> list[str]:
    return [sys.executable, "-m", "synthsr_nipype.cli.bids_app", str(bids), str(out), "participant",
            "--model", str(TINY), "--nprocs", str(nprocs), "-w", str(work)]


#: a progress line of synthsr-bids (one per finished node, printed without -v)
SCRATCH = ("pymp-", "synthsr-ants-", "synthsr_fusion_", "tmp")


def _scratch(folder: Path) -> list[str]:
    """Scratch folders (and files) a run would leave in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(SCRATCH))


def _is_output(out: Path, path: Path) -> bool:
    """A derivative file: not the logs, not the per-subject report (sub-X.html and its figures, which
    describe each run: its time, command and node run times)."""
    rel = path.relative_to(out)
    return (path.is_file() and "logs" not in rel.parts and "figures" not in rel.parts
            and not (len(rel.parts) == 1 and rel.suffix == ".html"))


def _digest(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if _is_output(out, p)}


def _hidden(out: Path) -> list[str]:
    return [p.relative_to(out).as_posix() for p in out.rglob(".*") if p.name != ".bidsignore"]


def _reached(point: str, out: Path, work: Path) -> bool:
    """Whether the run is inside ``point`` now (a node started and not finished, or a sink writing)."""
    if point == "derivatives":
        return any(out.glob("sub-*/anat/*"))
    started = list(work.glob(f"**/{point}/_node.pklz"))
    return any(not (node.parent / f"result_{point}.pklz").exists() for node in started)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    bids = _dataset(base)
    env = {**os.environ, "SYNTHSR_CACHE_DIR": str(base / "weights")}
    proc = subprocess.run(_command(bids, base / "out", base / "work"), env=env, capture_output=True, check=False,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"synthsr-bids: 3 scan(s) and 2 fused volume(s) in {base / 'out'}"]
    return bids, _digest(base / "out"), env, base


def _interrupt_at(point: str, sig: int, bids: Path, out: Path, work: Path, env: dict, nprocs: int = 1) -> None:
    proc = subprocess.Popen(_command(bids, out, work, nprocs), env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not _reached(point, out, work):
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before reaching {point}"
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, sig)  # the whole process group, as the OOM killer or `kill -9 -PGID`
    else:
        proc.send_signal(sig)  # the scheduler's wall-time signal, to the main process
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        lines = messages(err)  # progress lines of the nodes that finished, then the message
        assert proc.returncode == 1 and lines == ["ERROR: interrupted; rerun the same command to resume"], \
            (point, lines)
    else:
        assert proc.returncode == -signal.SIGKILL, point


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_interrupt_then_rerun_is_identical(reference, tmp_path, sig):
    """Interrupted in SynthSR (MultiProc: a forkserver and its workers), the rerun interrupted in
    fusion, that one while writing derivatives (each rerun resumes from the nodes finished before),
    then a last rerun completes. $TMPDIR (a private one) never holds a scratch folder."""
    bids, expected, env, _ = reference
    out, work = tmp_path / "out", tmp_path / "work"
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {**env, "TMPDIR": str(system_tmp)}
    for point, nprocs in (("synthsr", 2), ("fusion", 1), ("derivatives", 1)):
        if point == "derivatives":  # all nodes are cached now: the sinks must write everything anew
            for subject in out.glob("sub-*"):
                shutil.rmtree(subject) if subject.is_dir() else subject.unlink()
        _interrupt_at(point, sig, bids, out, work, env, nprocs)
        assert _scratch(system_tmp) == [], point
    # What a killed run leaves in the work dir's scratch: the next start removes it.
    for name in ("pymp-dead0001", "synthsr-ants-dead0001", "synthsr_fusion_dead0001"):
        (work / "tmp" / name).mkdir(parents=True, exist_ok=True)
        (work / "tmp" / name / "leftover.nii.gz").write_bytes(b"x")
    # What a writer killed mid-copy leaves (its process is gone), and a live writer's temporary
    # (a concurrent run into the same folder): the first is swept, the second left alone.
    anat = out / "sub-01" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    gone = _dead_pid()
    host = host_label()
    killed = anat / f".sub-01_desc-synthsr_T1w.nii.gz.{host}-{gone}.abcd1234.nii.gz"
    killed.write_bytes(b"\x1f\x8b partial")
    live = anat / f".sub-01_desc-synthsr_T1w.json.{host}-{os.getpid()}.efgh5678.tmp"
    live.write_text("{")
    rerun = subprocess.run(_command(bids, out, work), env=env, capture_output=True, text=True, timeout=600,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Traceback" not in rerun.stderr
    assert not killed.exists() and live.exists()
    assert _scratch(system_tmp) == [] and _scratch(work / "tmp") == []
    live.unlink()
    assert _digest(out) == expected
    assert _hidden(out) == []


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_rerun_leaves_identical_outputs_untouched(reference):
    """rsync and make see no change: identical outputs keep their modification time."""
    bids, expected, env, base = reference
    out = base / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if _is_output(out, p)}
    proc = subprocess.run(_command(bids, out, base / "work"), env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if _is_output(out, p)}
    assert after == before
    assert _digest(out) == expected


def test_fused_sidecar_names_every_input(reference):
    base = reference[3]
    meta = json.loads((base / "out" / "sub-01" / "anat" / "sub-01_desc-synthsr_T1w.json").read_text())
    assert meta["InputChannels"] == ["sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz"]
    assert len(meta["Sources"]) == 2


def test_multiproc_is_quiet_and_scratch_stays_in_the_work_dir(reference, tmp_path):
    """Without -v, MultiProc's workers print nothing (only the summary line); node scratch folders
    are made under the work directory, not in $TMPDIR."""
    bids, expected, env, _ = reference
    out, work = tmp_path / "out", tmp_path / "work"
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    command = _command(bids, out, work)
    command[command.index("--nprocs") + 1] = "2"
    proc = subprocess.run(command, env={**env, "TMPDIR": str(system_tmp)}, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"synthsr-bids: 3 scan(s) and 2 fused volume(s) in {out}"]
    # only the progress lines (one per finished node, issue 22): no worker output, no tracebacks
    progress = [ln for ln in proc.stderr.splitlines() if PROGRESS.match(ln)]
    assert progress and messages(proc.stderr) == []
    assert _digest(out) == expected
    assert (work / "tmp").is_dir()
    assert not [p.name for p in system_tmp.iterdir() if p.name.startswith(("synthsr", "tmp"))]


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` at ``path`` (the test must run as root; skips where it cannot mount)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk full: mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        pytest.skip(f"disk full: cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("full,size", [("out", "64k"), ("work", "600k")])
def test_disk_full_one_line_nothing_partial_rerun_completes(reference, tmp_path, full, size):
    bids, expected, env, _ = reference
    out, work = tmp_path / "out", tmp_path / "work"
    with _small_tmpfs(tmp_path / full, size) as mount:
        proc = subprocess.run(_command(bids, out, work), env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not PROGRESS.match(ln)]
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith(f"ERROR: no space left on {mount} writing "), lines
        if out.exists():
            assert _hidden(out) == []
            _assert_nothing_partial(out)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)  # space freed
        rerun = subprocess.run(_command(bids, out, work), env=env, capture_output=True, text=True, timeout=600,
                               check=False)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert _digest(out) == expected
        assert _hidden(out) == []
