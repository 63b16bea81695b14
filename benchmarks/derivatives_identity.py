"""Does a change keep the BIDS-App's derivatives byte-identical?  (issue 24: refactors must not move outputs)

The BIDS-App test dataset (``tests/cli/test_bids_app_e2e.build_dataset``: real clinical and simulated thick-slice
scans, three subjects, four groups) with the tiny fixture model through ``participant --seg-backend ants --tbm
--template-resolution 2`` and then ``group``, on the Linear plugin; the SHA-256 of every file outside ``logs/``.
Run it in a checkout of each commit, then compare::

    git worktree add ../before <old commit>
    (cd ../before && python benchmarks/derivatives_identity.py run /tmp/before)
    python benchmarks/derivatives_identity.py run /tmp/after
    python benchmarks/derivatives_identity.py compare /tmp/before /tmp/after

``compare`` explains the differences a rerun always has: HDF5 transforms whose datasets are all equal (their
headers hold timestamps), JSON equal once each run's folder is replaced by ``<run>``, and the reports
(``sub-X.html``: run id, times).  It exits 1 when anything else differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(base: Path) -> dict[str, str]:
    """Build the dataset under ``base``, run both levels into ``base/out``, write and return the hashes."""
    from synthsr_nipype.cli.bids_app import main
    from tests.cli.test_bids_app_e2e import build_dataset
    from tests.paths import TINY

    base.mkdir(parents=True, exist_ok=True)
    os.environ["SYNTHSR_CACHE_DIR"] = str(base / "cache")
    bids, out = build_dataset(base / "bids"), base / "out"
    (base / "linear.yml").write_text("plugin: Linear\n")
    common = ["--model", str(TINY), "--use-plugin", str(base / "linear.yml"), "--omp-nthreads", "1",
              "-w", str(base / "work")]
    for level, extra in (("participant", ["--seg-backend", "ants", "--tbm", "--template-resolution", "2"]),
                         ("group", ["--seg-backend", "ants"])):
        if (code := main([str(bids), str(out), level, *common, *extra])) != 0:
            raise SystemExit(f"{level} level: exit {code}")
    hashes = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(out.rglob("*")) if p.is_file() and p.relative_to(out).parts[0] != "logs"}
    (base / "hashes.json").write_text(json.dumps(hashes, indent=1) + "\n")
    print(f"{len(hashes)} files hashed into {base / 'hashes.json'}")
    return hashes


def _h5_datasets(path: Path) -> dict:
    import h5py

    found: dict = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def _without_run(text: str, base: Path) -> str:
    """A report with what every run changes (its folder, run id, clock times and node durations) blanked."""
    import re

    text = text.replace(str(base), "<run>")
    text = re.sub(r"logs/\d{8}-\d{6}_[0-9a-f-]{36}", "logs/<id>", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\+00:00| UTC)?", "<time>", text)
    return re.sub(r"<td>[\d.]+ s</td>", "<td>- s</td>", text)


def explain(name: str, before: Path, after: Path) -> str | None:
    """Why ``name`` differs between the two runs when the outputs are the same, or ``None`` when they are not."""
    import numpy as np

    a, b = before / "out" / name, after / "out" / name
    if name.endswith(".html"):
        same = _without_run(a.read_text(), before) == _without_run(b.read_text(), after)
        return "report (run id, times, durations)" if same else None
    if name.endswith(".h5"):
        x, y = _h5_datasets(a), _h5_datasets(b)
        same = x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        return "HDF5 header (every dataset equal)" if same else None
    if name.endswith(".json"):
        if a.read_text().replace(str(before), "<run>") == b.read_text().replace(str(after), "<run>"):
            return "the run's folder"
    return None


def compare(before: Path, after: Path) -> int:
    old = json.loads((before / "hashes.json").read_text())
    new = json.loads((after / "hashes.json").read_text())
    only = sorted(set(old) ^ set(new))
    differ = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    reasons = {k: explain(k, before, after) for k in differ}
    print(f"{len(old)} and {len(new)} files; {len(set(old) & set(new)) - len(differ)} identical; "
          f"{len(differ)} differ")
    for name in differ:
        print(f"  {name}: {reasons[name] or 'CONTENT DIFFERS'}")
    for name in only:
        print(f"  {name}: only in {'the first' if name in old else 'the second'} run")
    return 1 if only or not all(reasons.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="build the dataset, run both levels, hash").add_argument("base", type=Path)
    cmp = sub.add_parser("compare", help="compare two runs' hashes, explaining the differences")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.base.resolve())
        return 0
    return compare(args.before.resolve(), args.after.resolve())


if __name__ == "__main__":
    sys.exit(main())
