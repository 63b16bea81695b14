"""``synthsr``: FreeSurfer ``mri_synthsr``'s command line on the torch implementation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

# Transparent huge pages for torch's large CPU tensors: a quarter of the page faults (read at torch's first
# allocation, so before torch is imported).  See docs/performance.md.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import nibabel as nib  # noqa: E402

from ..atomic import atomic_write_json, atomic_write_nifti  # noqa: E402
from ..errors import UsageError, reports_errors  # noqa: E402
from ..inference import Synthesis, native_image, run, synthesise  # noqa: E402
from .common import (  # noqa: E402
    IMAGE_EXTENSIONS,
    add_runtime_arguments,
    command_parser,
    is_image_path,
    model_from_args,
    one_line_warnings,
    pair_outputs,
    run_batch,
)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "synthsr",
        "SynthSR: a synthetic 1 mm MP-RAGE from a scan of any contrast and resolution "
        "(PyTorch port of FreeSurfer's mri_synthsr; same flags, same outputs).")
    parser.add_argument("--i", required=True, metavar="IN",
                        help="image to super-resolve, a folder of images, or a .txt list of image paths")
    parser.add_argument("--o", required=True, metavar="OUT",
                        help="output image, folder (outputs named <name>_synthsr.nii.gz) or .txt list")
    parser.add_argument("--ct", action="store_true", help="(optional) CT in Hounsfield units: clip to [0, 80]")
    parser.add_argument("--disable_sharpening", action="store_true", help="(optional) no unsharp masking")
    parser.add_argument("--disable_flipping", action="store_true",
                        help="(optional) no left-right flip test-time augmentation (one network pass)")
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--v1", action="store_true", help="(optional) version 1 model from July 2021")
    models.add_argument("--lowfield", action="store_true", help="(optional) model for low-field scans")
    models.add_argument("--model", default=None,
                        help="(optional) a model name (v2, lowfield, v1, lite), a Keras .h5 weight file or a "
                             "model trained with synthsr-train (.safetensors)")
    add_synthesis_arguments(parser)
    return parser


def add_synthesis_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every SynthSR image command (``synthsr``, ``synthsr-hyperfine``), after its inputs,
    outputs, model and model options: the extra outputs, where it runs and within what memory."""
    parser.add_argument("--reliability", default=None, metavar="OUT",
                        help="(optional) also write each output's reliability map (float 0-1 on the output grid, "
                             "with a JSON sidecar of its formula and QC numbers; docs/qc.md): a file for one input, "
                             "else a folder (maps named <name>_reliability.nii.gz)")
    parser.add_argument("--output-space", choices=("1mm", "native"), default="1mm",
                        help="(optional) native: also write each output resampled onto the (first) input scan's "
                             "grid and field of view, beside it as <output>_native.nii.gz (default 1mm: the 1 mm "
                             "output only)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="(optional) leave outputs that already exist untouched")
    add_runtime_arguments(parser)
    parser.add_argument("--max-memory-gb", type=float, default=None, metavar="GB",
                        help="(optional) keep the estimated peak memory under GB: thinner slabs, then overlapping "
                             "tiles (at most 0.1 %% of voxels change, by one level)")


def model_choice(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    return "v1" if args.v1 else "lowfield" if args.lowfield else "v2"


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs, outputs = pair_outputs(args.i, args.o)
    return synthesise_batch(args, [[path] for path in inputs], outputs, model=model_choice(args),
                            other="use synthsr-hyperfine for it", command="synthsr",
                            ct=args.ct, flip=not args.disable_flipping, sharpen=not args.disable_sharpening)


def synthesise_batch(args: argparse.Namespace, inputs: Sequence[Sequence[str]], outputs: Sequence[str], *,
                     model: str, other: str, command: str, ct: bool = False, flip: bool = True,
                     sharpen: bool = True) -> int:
    """What a SynthSR image command does once each output has its channel images (``inputs``: one list per
    output, as many images as the model has channels).

    Checks the options and the model (one of another channel count is an error ending with ``other``), then
    runs one job per output through :func:`~synthsr_nipype.cli.common.run_batch`, with the reliability map
    and the native-space copy that :func:`add_synthesis_arguments` asks for; ``ct``, ``flip`` and ``sharpen``
    as :func:`synthsr_nipype.inference.run` takes them.  Returns the exit code."""
    one_line_warnings()
    maps = reliability_targets(args.reliability, outputs)
    if args.max_memory_gb is not None and args.max_memory_gb <= 0:
        raise UsageError("--max-memory-gb must be positive")
    channels = len(inputs[0]) if inputs else 1
    net, device, threads = model_from_args(args, model, channels=channels, other=other, command=command)
    options = dict(ct=ct, flip=flip, sharpen=sharpen, device=device, threads=threads,
                   max_memory_gb=args.max_memory_gb, precision=args.precision)

    def job(sources: list[str], target: str, reliability: str | None) -> Callable[[], nib.Nifti1Image]:
        if reliability is None and args.output_space == "1mm":
            return lambda: run(sources, net, **options)

        def extras() -> nib.Nifti1Image:
            # one run: the reliability map needs the two TTA passes of the same inference
            syn = synthesise(sources, net, **options)
            if args.output_space == "native":
                atomic_write_nifti(native_name(target), native_image(syn.image, syn.volumes[0]))
            if reliability is not None:
                write_reliability(reliability, syn, sources)
            return syn.image
        return extras

    return run_batch([(src[0], " + ".join(src), dst, job(list(src), dst, rel))
                      for src, dst, rel in zip(inputs, outputs, maps)], skip_existing=args.skip_existing)


def split_extension(path: str) -> tuple[str, str]:
    """``a/b.nii.gz`` -> (``a/b``, ``.nii.gz``)."""
    ext = next((e for e in IMAGE_EXTENSIONS if path.endswith(e)), "")
    return path[: len(path) - len(ext)], ext


def native_name(target: str) -> str:
    """``out.nii.gz`` -> ``out_native.nii.gz``: the native-space copy beside the 1 mm output."""
    stem, ext = split_extension(target)
    return stem + "_native" + (ext or ".nii.gz")


def reliability_targets(reliability: str | None, outputs: Sequence[str]) -> list[str | None]:
    """Where each output's map goes: ``--reliability`` itself for one output (an image path), else a folder."""
    if reliability is None:
        return [None] * len(outputs)
    path = os.path.abspath(reliability)
    if is_image_path(path):
        if len(outputs) != 1:
            raise UsageError(f"--reliability {reliability}: must be a folder when there are {len(outputs)} inputs")
        return [path]
    return [os.path.join(path, "{}_reliability{}".format(*split_extension(os.path.basename(out))))
            for out in outputs]


def write_reliability(target: str, syn: Synthesis, sources: Sequence[str]) -> None:
    """The map (atomically) and its JSON sidecar beside it; a BIDS-style sidecar beside each input
    (``SliceThickness``, ``SliceEncodingDirection``) tells slice gaps the header cannot."""
    from ..bids.scan import slice_geometry
    from ..inference import reliability

    geometry = [slice_geometry(source) for source in sources]
    rel = syn.reliability([thickness or 0.0 for thickness, _ in geometry],
                          [direction or "" for _, direction in geometry])
    atomic_write_nifti(target, reliability.map_image(rel.reliability, syn.image))
    meta = reliability.sidecar(rel.qc, Source=" + ".join(os.path.basename(source) for source in sources))
    atomic_write_json(split_extension(target)[0] + ".json", meta)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
