"""``synthsr-hyperfine``: FreeSurfer ``mri_synthsr_hyperfine`` (T1 + T2 low-field pair) on torch."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError, reports_errors
from .common import command_parser, pair_outputs
from .synthsr import add_synthesis_arguments, synthesise_batch


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "synthsr-hyperfine",
        "SynthSR for a pair of Hyperfine T1 and T2 scans (1.5x1.5x5 mm axial), registered in "
        "physical space (headers only, not resampled). PyTorch port of mri_synthsr_hyperfine, with "
        "synthsr's options.")
    parser.add_argument("--t1", required=True, help="T1 image, folder of images or .txt list")
    parser.add_argument("--t2", required=True, help="T2 image(s), matching --t1 one to one")
    parser.add_argument("--o", required=True, help="output image, folder or .txt list")
    parser.add_argument("--model", default="hyperfine", help="(optional) a 2-channel Keras .h5 weight file")
    add_synthesis_arguments(parser)
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t1s, outputs = pair_outputs(args.t1, args.o)
    t2s, _ = pair_outputs(args.t2, args.o)
    if len(t1s) != len(t2s):
        raise UsageError(f"{len(t1s)} T1 image(s) but {len(t2s)} T2 image(s)")
    return synthesise_batch(args, [[t1, t2] for t1, t2 in zip(t1s, t2s)], outputs, model=args.model,
                            other="the Hyperfine pipeline needs 2", command="synthsr-hyperfine")


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
