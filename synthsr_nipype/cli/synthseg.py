"""``synthseg``: FreeSurfer ``mri_synthseg``'s command line on the torch port (synthsr_nipype.segmentation)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..errors import EXIT_FAILED, EXIT_OK, SynthSRError, UsageError, reports_errors
from .common import (
    add_runtime_arguments,
    command_parser,
    device_from_args,
    is_image_path,
    list_images,
    one_line_warnings,
    report_failure,
    suffixed_name,
    threads_from_args,
)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "synthseg",
        "SynthSeg: segmentation, volumes, cortical parcellation and QC of a brain scan of any "
        "contrast and resolution (PyTorch port of FreeSurfer's mri_synthseg; same flags, same "
        "outputs).")
    parser.add_argument("--i", required=True, metavar="IN", help="image to segment, or a folder of images")
    parser.add_argument("--o", required=True, metavar="OUT",
                        help="segmentation output; a folder if --i is one (outputs named <name>_synthseg.nii.gz)")
    parser.add_argument("--parc", action="store_true", help="(optional) cortical parcellation")
    parser.add_argument("--robust", action="store_true",
                        help="(optional) SynthSeg-robust (slower; for clinical scans; implies --fast)")
    parser.add_argument("--fast", action="store_true",
                        help="(optional) no flip test-time augmentation, simpler post-processing")
    parser.add_argument("--ct", action="store_true", help="(optional) CT in Hounsfield units: clip to [0, 80]")
    parser.add_argument("--vol", metavar="CSV", help="(optional) CSV file of the structure volumes (mm^3)")
    parser.add_argument("--qc", metavar="CSV", help="(optional) CSV file of the automated QC scores")
    parser.add_argument("--post", metavar="OUT", help="(optional) posteriors output (file, or folder if --i is one)")
    parser.add_argument("--resample", metavar="OUT",
                        help="(optional) the 1 mm image the networks saw, written only when resampling happened")
    parser.add_argument("--crop", nargs="+", type=int, metavar="N",
                        help="(optional) analyse only a centred patch of this size (1 or 3 values, rounded up "
                             "to multiples of 32)")
    parser.add_argument("--autocrop", action="store_true",
                        help="(optional) analyse only the box of the voxels above the image's minimum")
    parser.add_argument("--v1", action="store_true", help="(optional) SynthSeg 1.0 (needs synthseg_1.0.h5)")
    parser.add_argument("--keepgeom", action="store_true",
                        help="(optional) segmentation on the input's grid (affine and shape), resampled by nearest "
                             "neighbour when the image was resampled to 1 mm; posteriors, volumes and QC stay "
                             "those of the 1 mm grid")
    parser.add_argument("--models-dir", metavar="DIR",
                        help="(optional) folder holding the synthseg_*.h5 files, used as given (default: "
                             "$SYNTHSR_MODELS_DIR, $FREESURFER_HOME/models, then the synthsr-models cache)")
    add_runtime_arguments(parser, reference="mri_synthseg", precision=False)
    return parser


def _csv_path(path: str | None) -> str | None:
    if path is None or path.endswith(".csv"):
        return path
    print(f"{path}: no .csv extension, adding it")
    return path + ".csv"


#: the suffix of each output of an image of a folder (mri_synthseg's names)
OUTPUT_SUFFIXES = {"seg": "synthseg", "posteriors": "posteriors", "resampled": "resampled"}


def plan(args: argparse.Namespace) -> list[dict[str, str | None]]:
    """One dict per image: input, seg, posteriors, resampled (paths as mri_synthseg names them)."""
    src = os.path.abspath(args.i)
    outs = {"seg": args.o, "posteriors": args.post, "resampled": args.resample}
    if os.path.isdir(src):
        images = list_images(Path(src))
        for value in outs.values():
            if value is not None and is_image_path(value):
                raise UsageError(f"{value}: must be a folder when --i is a folder")
    elif not is_image_path(src):
        raise UsageError(f"{args.i}: extension not supported; use .nii.gz, .nii or .mgz, or a folder")
    elif not os.path.isfile(src):
        raise UsageError(f"{args.i}: file does not exist")
    else:
        images = [src]

    def target(image: str, key: str) -> str | None:
        value = outs[key]
        if value is None or is_image_path(value):  # a file only for a single input (checked above)
            return None if value is None else os.path.abspath(value)
        return os.path.join(os.path.abspath(value), suffixed_name(image, OUTPUT_SUFFIXES[key]))

    return [{"input": image, **{key: target(image, key) for key in outs}} for image in images]


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    one_line_warnings()
    if args.crop is not None and args.autocrop:
        raise UsageError("--autocrop cannot be used with --crop")
    if args.crop is not None and (len(args.crop) not in (1, 3) or min(args.crop) <= 0):
        raise UsageError("--crop takes 1 or 3 positive sizes")
    if args.robust and args.v1:
        raise UsageError("--v1 cannot be used with --robust: SynthSeg-robust only came out with 2.0")
    threads = threads_from_args(args)
    jobs = plan(args)
    vol, qc = _csv_path(args.vol), _csv_path(args.qc)
    from ..inference import pick_device
    from ..segmentation import api

    device = pick_device(device_from_args(args))
    networks = api.load_for(robust=args.robust, parc=args.parc, qc=qc is not None, v1=args.v1,
                            device=device, models_dir=args.models_dir)
    version = api.version_name(robust=args.robust, fast=args.fast or args.robust, v1=args.v1)
    print(f"synthseg {__version__}: {version}, device {device}, {threads or 'all'} thread(s)", file=sys.stderr)
    return _run_all(jobs, args, networks, device, threads, vol, qc)


def _run_all(jobs, args, networks, device, threads: int | None, vol: str | None, qc: str | None) -> int:
    from ..atomic import atomic_write_text
    from ..segmentation import api, qc_csv, volumes_csv, write_outputs
    from ..segmentation.tables import load_tables, volume_names

    results, failures = [], 0
    for index, job in enumerate(jobs, start=1):
        start = time.perf_counter()
        try:
            result = api.run(job["input"], robust=args.robust, parc=args.parc, fast=args.fast, qc=qc is not None,
                             v1=args.v1, ct=args.ct, crop=args.crop, autocrop=args.autocrop,
                             posteriors=job["posteriors"] is not None, keep_geometry=args.keepgeom,
                             threads=threads, device=device, networks=networks)
            write_outputs(result, job["seg"], posteriors=job["posteriors"], resampled=job["resampled"])
        except (SynthSRError, RuntimeError, MemoryError, OSError) as exc:
            report_failure(job["input"], exc)
            failures += 1
            continue
        results.append(result)
        print(f"[{index}/{len(jobs)}] {job['input']} -> {job['seg']} ({time.perf_counter() - start:.1f} s)",
              file=sys.stderr)
    tables = load_tables(v1=args.v1, flip=False)
    try:  # one table for all images (the header alone if none succeeded), as the reference's unique CSV file
        if vol is not None:
            os.makedirs(os.path.dirname(os.path.abspath(vol)), exist_ok=True)
            atomic_write_text(vol, volumes_csv(results, volume_names(tables, args.parc)))
        if qc is not None:
            os.makedirs(os.path.dirname(os.path.abspath(qc)), exist_ok=True)
            atomic_write_text(qc, qc_csv(results, tables.qc_names))
    except OSError as exc:
        report_failure(vol or qc or "", exc)
        failures += 1
    if failures:
        print(f"ERROR: {failures} of {len(jobs)} image(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
