"""``synthsr-demo``: run SynthSR on a thick-slice scan simulated from nilearn's bundled MNI152 template."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..atomic import atomic_write_nifti
from ..errors import ModelNotFoundError, report, reports_errors
from ..inference import run
from ..inference.simulate import simulate_acquisition
from ..model import DEFAULT_MODEL, load_model
from ..model.registry import model_notes
from ..reports.slices import save_comparison

#: Shipped inside the package, so that the demo shows a brain on a machine that has only the repository.
FALLBACK_MODEL = "lite"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthsr-demo", description=__doc__)
    parser.add_argument("--model", default=None,
                        help=f"model name or weight file (default {DEFAULT_MODEL}, or the bundled '{FALLBACK_MODEL}' "
                             f"model when {DEFAULT_MODEL} is not found)")
    parser.add_argument("--out", default="synthsr-demo",
                        help="output folder (default ./synthsr-demo, which the repository's .gitignore hides)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nilearn.datasets import (
        load_mni152_template,  # bundled with nilearn, no download
    )

    out = Path(args.out)
    try:  # the model first: a missing or broken one ends the demo before anything is written
        model = load_model(args.model or DEFAULT_MODEL)
    except ModelNotFoundError as exc:
        if args.model is not None:
            return report(exc)
        print(f"model {DEFAULT_MODEL} not found (synthsr-models fetch {DEFAULT_MODEL} gets it): using the bundled "
              f"'{FALLBACK_MODEL}' model, trained by this package", file=sys.stderr)
        model = load_model(FALLBACK_MODEL)
    if (notes := model_notes(model.name)) is not None:
        print(f"NOTE: {notes.note}", file=sys.stderr)
    template = load_mni152_template(resolution=1)
    clinical = simulate_acquisition(template, (1.0, 1.0, 5.0), tilt_degrees=12.0, noise=0.01)
    atomic_write_nifti(out / "clinical_5mm_axial.nii.gz", clinical)
    print(f"simulated a 5 mm axial scan from the MNI152 template: {out / 'clinical_5mm_axial.nii.gz'}")
    start = time.perf_counter()
    result = run(clinical, model=model, threads=args.threads)
    atomic_write_nifti(out / "clinical_5mm_axial_synthsr.nii.gz", result)
    figure = save_comparison(clinical, result, out / "comparison.png")
    print(f"SynthSR output ({time.perf_counter() - start:.1f} s): {out / 'clinical_5mm_axial_synthsr.nii.gz'}")
    print(f"side-by-side figure: {figure}")
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
