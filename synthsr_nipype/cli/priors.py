"""``synthsr-estimate-priors``: fit a contrast's per-class intensity prior tables from images + label maps."""

from __future__ import annotations

import argparse
import sys

from ..synth.labels import ClassTable
from ..synth.priors import estimate_priors, write_priors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthsr-estimate-priors",
        description="Fit prior_means_<contrast>.npy and prior_stds_<contrast>.npy (2 x K tables, as SynthSR's) "
                    "from images and their label maps, for `synthsr-train` channels or targets.",
        epilog="exit codes: 0 success; 1 unreadable or unusable images / label maps; 2 usage error")
    parser.add_argument("--images", nargs="+", required=True, help="images of one contrast")
    parser.add_argument("--labels", nargs="+", required=True, help="their label maps, in the same order")
    parser.add_argument("--tables", required=True,
                        help="folder with generation_labels.npy and the classes table (the generator's tables)")
    parser.add_argument("--classes", default="generation_classes",
                        help="classes table name in --tables (default: generation_classes)")
    parser.add_argument("--contrast", required=True, help="name of the contrast, e.g. t2 or flair_3t")
    parser.add_argument("--out", required=True, help="folder to write the two tables to")
    parser.add_argument("--no-rescale", action="store_true",
                        help="keep the images' own intensity units (default: rescale each to 0-255 first)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        table = ClassTable.from_folder(args.tables, args.classes)
        means, stds = estimate_priors(args.images, args.labels, table, rescale=not args.no_rescale)
        for path in write_priors(args.out, args.contrast, means, stds):
            print(path)
    except (OSError, ValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())
