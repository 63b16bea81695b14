"""``synthsr-models``: list the known models and where they were found; fetch one."""

from __future__ import annotations

import argparse
import sys
import urllib.parse

from ..errors import EXIT_OK, SynthSRError, reports_errors
from ..model.cache import sha256_file
from ..model.card import ModelCard, is_card_model, read_card
from ..model.fetch import fetch_model, model_url, where
from ..model.registry import MODELS, resolve_model_path, search_dirs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthsr-models", description="Find and download SynthSR weights.",
                                     epilog="exit codes: 0 success; 2 not found or download/verification failed; "
                                            "3 not a model with a card")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="known models, their SHA-256 and where each was found (with the card of a "
                                "model trained by this package)")
    card = sub.add_parser("card", help="print the model card (JSON) of a trained model: a name or a .safetensors")
    card.add_argument("model", help="registry name (e.g. lite) or path")
    fetch = sub.add_parser("fetch", help="download a model (resumes a partial download, verifies SHA-256); "
                                         "--print-url: where to get it by hand")
    fetch.add_argument("name", choices=sorted(MODELS))
    fetch.add_argument("--url", default=None,
                       help="a mirror holding the files under the names 'list' shows (default: $SYNTHSR_MODELS_URL, "
                            "else the publisher's address: FreeSurfer's git-annex remote for v2 and lowfield, "
                            "FreeSurfer's source tree (mri_synthsr/) for v1 and hyperfine)")
    fetch.add_argument("--print-url", action="store_true",
                       help="download nothing: print the address, size, SHA-256 and where to put the file "
                            "(for a compute node without internet: fetch it on a login node)")
    fetch.add_argument("--dest", default=None, help="folder to write to (default: the user cache that is searched)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def card_summary(card: ModelCard) -> str:
    """One line: channels, network, how it was trained."""
    data = card.data
    arch = data.get("architecture", {})
    training = data.get("training", {})
    maps = training.get("label_maps", {})
    return (f"channels {'+'.join(card.suffixes)}; U-Net {arch.get('n_levels')} levels x "
            f"{arch.get('base_features')} features; {training.get('steps')} steps (seed {training.get('seed')}, "
            f"crop {training.get('crop')}) on {len(maps.get('training', []))} label maps "
            f"(best validation loss {_rounded(training.get('best_validation_loss'))} at step "
            f"{training.get('best_step')}); "
            f"synthsr-nipype {data.get('package_version')}")


def _rounded(value: object) -> object:
    """A loss as people read it (4 significant digits), anything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else value


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print("search order: --model PATH, " + ", ".join(str(d) for d in search_dirs()))
        for name, info in MODELS.items():
            try:
                found = str(resolve_model_path(name)[0])
            except SynthSRError:
                found = "not found"
            digest = info.sha256
            if digest is None and info.bundled and found != "not found":
                digest = sha256_file(found)  # the bundled model's own hash
            print(f"{name:10s} {info.filename:36s} {digest or '(no published hash)'}  {found}")
            if found != "not found" and is_card_model(found):
                print(f"{'':10s} card: {card_summary(read_card(found, runnable=False)[1])}")
        return EXIT_OK
    if args.command == "card":
        path, _ = resolve_model_path(args.model)
        print(read_card(path, runnable=False)[1].to_json())
        return EXIT_OK
    info = MODELS[args.name]
    if args.print_url:
        print("\n".join(where(args.name, dest_dir=args.dest, base_url=args.url).lines()))
        return EXIT_OK
    host = urllib.parse.urlsplit(model_url(info, args.url)).hostname
    print(f"fetching {info.filename} from {host} (--print-url shows the address)", file=sys.stderr)
    path = fetch_model(args.name, dest_dir=args.dest, base_url=args.url, progress=not args.quiet)
    if info.sha256 is None:
        print(f"note: {info.name} has no published SHA-256; checked that it is a Keras HDF5 file holding "
              f"the {info.in_channels}-channel SynthSR U-Net (SHA-256 {sha256_file(path)})", file=sys.stderr)
    print(path)
    return EXIT_OK


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
