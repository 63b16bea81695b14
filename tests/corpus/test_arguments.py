"""Bad arguments and bad places: ``synthsr-bids`` refuses each with one line and the documented exit
code before anything is written (docs/bids-app.md, exit codes)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import TINY

from .build import _image, snapshot

#: docs/bids-app.md: 1 bad input or place, 2 usage or missing dependency, 3 corrupted model.
BAD_INPUT, USAGE, BAD_MODEL = 1, 2, 3


@dataclass
class ArgCase:
    name: str
    klass: str
    code: int
    words: str
    argv: Callable[[Path, Path], list[str]]  # (tmp, bids) -> arguments after the program name


def _dataset(root: Path) -> Path:
    bids = root / "bids"
    (bids / "sub-01" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "args", "BIDSVersion": "1.9.0"}))
    _image(1).to_filename(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    return bids


def _file(path: Path, text: str = "x") -> Path:
    path.write_text(text)
    return path


def _std(tmp: Path, bids: Path, *extra: str, out: str = "out", work: str = "work") -> list[str]:
    return [str(bids), str(tmp / out), "participant", "--model", str(TINY), "-w", str(tmp / work), *extra]


@contextlib.contextmanager
def read_only_folder(path: Path):
    """A read-only folder: by permissions for a normal user; root ignores them, so a read-only
    tmpfs is mounted (skips where mounting is not allowed)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True,
                          check=False)
    if proc.returncode:
        pytest.skip(f"read-only output folder: cannot mount a read-only tmpfs as root ({proc.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _derivatives(out: Path) -> Path:
    """An output folder as a participant run without --seg-backend leaves it (no volumes)."""
    from synthsr_nipype.bids.derivatives import write_dataset_description

    write_dataset_description(out, out.parent / "bids")
    return out


def _corrupt_model(tmp: Path) -> Path:
    path = tmp / "broken.h5"
    path.write_bytes(TINY.read_bytes()[:4096])
    return path


def _cases() -> list[ArgCase]:
    def plugin(tmp, bids, text):
        return _std(tmp, bids, "--use-plugin", str(_file(tmp / "plugin.yml", text)))

    def filters(tmp, bids, text):
        return _std(tmp, bids, "--bids-filter-file", str(_file(tmp / "filter.json", text)))

    cases = [
        ArgCase("output is a file", "place", BAD_INPUT, "is a file",
                lambda t, b: [str(b), str(_file(t / "out")), "participant", "--model", str(TINY), "-w", str(t / "w")]),
        ArgCase("output below a file", "place", BAD_INPUT, "is a file",
                lambda t, b: _std(t, b, out=f"{_file(t / 'f').name}/out")),
        ArgCase("output is a dangling symlink", "place", BAD_INPUT, "dangling symbolic link",
                lambda t, b: (os.symlink(t / "gone", t / "out"), _std(t, b))[1]),
        ArgCase("work dir is a file", "place", BAD_INPUT, "work directory",
                lambda t, b: (_file(t / "work"), _std(t, b))[1]),
        ArgCase("output inside the dataset", "place", BAD_INPUT, "inside the BIDS dataset",
                lambda t, b: [str(b), str(b / "out"), "participant", "--model", str(TINY), "-w", str(t / "w")]),
        ArgCase("work dir inside the dataset", "place", BAD_INPUT, "inside the BIDS dataset",
                lambda t, b: [str(b), str(t / "out"), "participant", "--model", str(TINY), "-w", str(b / "w")]),
        ArgCase("database inside the dataset", "place", BAD_INPUT, "--bids-database-dir",
                lambda t, b: _std(t, b, "--bids-database-dir", str(b / ".pybids_db"))),
        ArgCase("bids_dir does not exist", "place", USAGE, "folder not found",
                lambda t, b: [str(t / "nope"), str(t / "out"), "participant"]),
        ArgCase("bids_dir is not a dataset", "place", BAD_INPUT, "not a BIDS dataset",
                lambda t, b: _std(t, (t / "empty").mkdir() or t / "empty")),
        ArgCase("unknown filter entity", "filter", BAD_INPUT, "unknown entity acquisitionn",
                lambda t, b: filters(t, b, '{"t1w": {"acquisitionn": "x"}}')),
        ArgCase("filter file not JSON", "filter", BAD_INPUT, "not a readable JSON",
                lambda t, b: filters(t, b, "{t1w: x")),
        ArgCase("filter for an unselected suffix", "filter", BAD_INPUT, "match no selected suffix",
                lambda t, b: filters(t, b, '{"bold": {"task": "rest"}}')),
        ArgCase("filter file missing", "filter", USAGE, "file not found",
                lambda t, b: _std(t, b, "--bids-filter-file", str(t / "missing.json"))),
        ArgCase("device bogus", "device", USAGE, "'bogus' is not a device",
                lambda t, b: _std(t, b, "--device", "bogus")),
        ArgCase("unknown plugin", "plugin", BAD_INPUT, "unknown Nipype plugin 'Bogus'",
                lambda t, b: plugin(t, b, "plugin: Bogus\n")),
        ArgCase("plugin file without plugin", "plugin", BAD_INPUT, "'plugin' key",
                lambda t, b: plugin(t, b, "plugin_args: {}\n")),
        ArgCase("plugin file not YAML", "plugin", BAD_INPUT, "cannot read plugin settings",
                lambda t, b: plugin(t, b, "plugin: [Linear\n")),
        ArgCase("path traversal label", "label", BAD_INPUT, "invalid sub label",
                lambda t, b: _std(t, b, "--participant-label", "../x")),
        ArgCase("unknown participant", "label", BAD_INPUT, "not found",
                lambda t, b: _std(t, b, "--participant-label", "99")),
        ArgCase("unknown session", "label", BAD_INPUT, "not found", lambda t, b: _std(t, b, "--session-label", "zz")),
        ArgCase("model file missing", "model", USAGE, "model file does not exist",
                lambda t, b: [str(b), str(t / "out"), "participant", "--model", str(t / "none.h5"),
                              "-w", str(t / "w")]),
        ArgCase("model file corrupted", "model", BAD_MODEL, "broken.h5",
                lambda t, b: [str(b), str(t / "out"), "participant", "--model", str(_corrupt_model(t)),
                              "-w", str(t / "w")]),
        ArgCase("nprocs 0", "usage", USAGE, "--nprocs", lambda t, b: _std(t, b, "--nprocs", "0")),
        ArgCase("unknown analysis level", "usage", USAGE, "analysis_level",
                lambda t, b: [str(b), str(t / "out"), "subject"]),
        ArgCase("group level before any participant run", "usage", BAD_INPUT, "run the participant level first",
                lambda t, b: [str(b), str(t / "out"), "group"]),
        ArgCase("group level after a run without --seg-backend", "usage", BAD_INPUT, "--seg-backend or --tbm",
                lambda t, b: [str(b), str(_derivatives(t / "out")), "group"]),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(ArgCase("device cuda without a GPU", "device", USAGE, "no CUDA GPU",
                             lambda t, b: _std(t, b, "--device", "cuda")))
    return cases


def test_bad_arguments_and_places(tmp_path, capsys):
    from synthsr_nipype.cli.bids_app import main

    outcome = collections.Counter()
    for index, case in enumerate(_cases()):
        tmp = tmp_path / f"case{index:02d}"
        tmp.mkdir()
        bids = _dataset(tmp)
        argv = case.argv(tmp, bids)
        before, entries = snapshot(bids), set(tmp.iterdir())
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        captured = capsys.readouterr()
        lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.strip()]
        assert code == case.code, (case.name, code, lines)
        assert len(lines) == 1 and case.words in lines[0], (case.name, lines)
        assert "Traceback" not in lines[0]
        assert snapshot(bids) == before, case.name
        assert set(tmp.iterdir()) == entries, (case.name, sorted(set(tmp.iterdir()) ^ entries))
        outcome[case.klass] += 1
    with read_only_folder(tmp_path / "ro") as read_only:
        bids = _dataset(tmp_path)
        code = main([str(bids), str(read_only / "out"), "participant", "--model", str(TINY), "-w", str(tmp_path / "w")])
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == BAD_INPUT and len(err) == 1 and "not writable" in err[0], err
        assert not (tmp_path / "w").exists()
        outcome["place"] += 1
    print(f"\nsynthsr-bids arguments and places: {sum(outcome.values())} cases")
    for klass, n in sorted(outcome.items()):
        print(f"  {klass:7s} refused   {n}")
