"""Helpers shared by the ``synthsr``, ``synthsr-hyperfine`` and ``synthseg`` commands."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib

from .. import __version__
from ..atomic import atomic_write_nifti
from ..errors import EXIT_FAILED, EXIT_OK, ModelError, SynthSRError, UsageError
from ..inference.memory import PRECISIONS

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".mgz")

EXIT_CODES_HELP = (
    "exit codes: 0 success; 1 at least one image failed (the others are still processed); "
    "2 usage error or model not found; 3 corrupted or wrong-architecture model file"
)


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of an image command: its exit codes below the options and ``--version``."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_CODES_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def add_runtime_arguments(parser: argparse.ArgumentParser, *, reference: str = "mri_synthsr",
                          precision: bool = True) -> None:
    """``--threads`` (default 1, as ``reference``), ``--cpu``, ``--device`` and, with ``precision``,
    ``--precision``: read back by :func:`model_from_args` (or :func:`device_from_args`, :func:`threads_from_args`)."""
    parser.add_argument("--threads", type=int, default=1,
                        help=f"(optional) number of CPU threads (default 1, as {reference}; 0 = all cores)")
    parser.add_argument("--cpu", action="store_true", help="(optional) run on the CPU even if a GPU is present")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                        help="(optional) compute device (default: auto = CUDA, then MPS, then CPU)")
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="(optional) network arithmetic: fp32 (default; IEEE, matches mri_synthsr), tf32 "
                                 "(CUDA only, else fp32) or bf16; both faster on recent hardware, neither meets "
                                 "the fidelity criteria (docs/performance.md)")


def device_from_args(args: argparse.Namespace) -> str:
    return "cpu" if args.cpu else args.device


def threads_from_args(args: argparse.Namespace) -> int | None:
    if args.threads is not None and args.threads < 0:
        raise UsageError("--threads must be >= 0")
    return None if not args.threads else args.threads


def model_from_args(args: argparse.Namespace, name: str, *, channels: int, other: str, command: str):
    """``--threads``, ``--cpu``/``--device`` and the model of an image command, checked once: ``(model,
    device, threads)``; a model of another channel count is a :class:`~synthsr_nipype.errors.ModelError`
    that ends with ``other`` (what to use instead).  One line on stderr says what runs (``command``, the
    package's version, the model and its SHA-256, the device), and the model's note where it has one."""
    # torch loads here, not at import: ``synthseg --help`` (which imports this module) stays light
    from ..inference import pick_device
    from ..model import load_model
    from ..model.registry import model_notes

    threads = threads_from_args(args)
    device = pick_device(device_from_args(args))
    model = load_model(name, device=device)
    if model.in_channels != channels:
        raise ModelError(f"{model.path}: a {model.in_channels}-channel model; {other}")
    print(f"{command} {__version__}: model {model.name} (sha256 {model.sha256[:12]}), device {device}", file=sys.stderr)
    if (notes := model_notes(model.name)) is not None:
        print(f"NOTE: {notes.note}", file=sys.stderr)
    return model, device, threads


def one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001 - warnings API
        print(f"WARNING: {message}", file=sys.stderr)

    warnings.showwarning = show


def is_image_path(path: str) -> bool:
    return path.endswith(IMAGE_EXTENSIONS)


def suffixed_name(path: str, suffix: str = "synthsr") -> str:
    """FreeSurfer's output naming of a folder's images (``mri_synthsr``, ``mri_synthseg``): the base name with
    ``_<suffix>`` before the extension.

    >>> suffixed_name("/in/t2.nii.gz"), suffixed_name("flair.mgz", "posteriors")
    ('t2_synthsr.nii.gz', 'flair_posteriors.mgz')
    """
    base = os.path.basename(path)
    return base.replace(".nii", f"_{suffix}.nii").replace(".mgz", f"_{suffix}.mgz")


def list_images(folder: Path) -> list[str]:
    files = sorted(str(p) for p in folder.iterdir() if p.is_file() and is_image_path(p.name))
    if not files:
        raise UsageError(f"{folder}: no .nii, .nii.gz or .mgz image in this folder")
    return files


def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise UsageError(f"{path}: list file does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def pair_outputs(inputs: str, outputs: str) -> tuple[list[str], list[str]]:
    """Expand ``--i``/``--o`` like ``mri_synthsr``: a file, a folder or a ``.txt`` list."""
    src, dst = os.path.abspath(inputs), os.path.abspath(outputs)
    if src.endswith(".txt"):
        if not dst.endswith(".txt"):
            raise UsageError("if --i is a .txt list, --o must be a .txt list of output paths too")
        ins, outs = read_list(Path(src)), read_list(Path(dst))
        if len(ins) != len(outs):
            raise UsageError(f"{inputs} lists {len(ins)} images but {outputs} lists {len(outs)} outputs")
        return ins, outs
    if dst.endswith(".txt"):
        raise UsageError("--o can only be a .txt list when --i is one")
    if not is_image_path(src):
        if os.path.isfile(src):
            raise UsageError(f"{inputs}: extension not supported; use .nii.gz, .nii or .mgz")
        if not os.path.isdir(src):
            raise UsageError(f"{inputs}: no such file or folder")
        if is_image_path(dst):
            raise UsageError(f"{outputs}: must be a folder when --i is a folder")
        ins = list_images(Path(src))
        return ins, [os.path.join(dst, suffixed_name(p)) for p in ins]
    if not os.path.isfile(src):
        raise UsageError(f"{inputs}: file does not exist")
    if is_image_path(dst):
        return [src], [dst]
    return [src], [os.path.join(dst, suffixed_name(src))]


def report_failure(path: str, error: BaseException) -> None:
    message = str(error) if isinstance(error, SynthSRError) else f"{path}: {type(error).__name__}: {error}"
    if isinstance(error, SynthSRError) and path not in message:
        message = f"{path}: {message}"
    print(f"ERROR: {message}", file=sys.stderr)


#: One output to make: (file named in errors, label for progress, output path, the synthesis to run).
BatchJob = tuple[str, str, str, Callable[[], nib.Nifti1Image]]


def run_batch(jobs: Sequence[BatchJob], *, skip_existing: bool = False) -> int:
    """Run every job, writing outputs atomically; a failure is reported and the others still run."""
    from ..atomic import sweep_temporaries

    # what a run killed with -9 left beside its outputs (never a live concurrent run's)
    for folder in sorted({os.path.dirname(target) for _, _, target, _ in jobs}):
        if os.path.isdir(folder):
            sweep_temporaries(folder, recursive=False)
    failures = 0
    for index, (source, label, target, synthesise) in enumerate(jobs, start=1):
        prefix = f"[{index}/{len(jobs)}] {label}"
        if skip_existing and os.path.isfile(target):
            print(f"{prefix}: {target} exists, skipped", file=sys.stderr)
            continue
        start = time.perf_counter()
        try:
            atomic_write_nifti(target, synthesise())
        except (SynthSRError, RuntimeError, MemoryError, OSError) as exc:
            report_failure(source, exc)
            failures += 1
            continue
        print(f"{prefix} -> {target} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    if failures:
        print(f"ERROR: {failures} of {len(jobs)} job(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
