"""``synthsr-models``: list the known models and where they were found; fetch one."""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_OK, SynthSRError
from ..model.cache import sha256_file
from ..model.card import ModelCard, is_card_model, read_card
from ..model.fetch import downloadable, fetch_model, model_url
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
    fetch = sub.add_parser("fetch", help="download a model (resumes a partial download, verifies SHA-256)")
    fetch.add_argument("name", choices=sorted(downloadable()))
    fetch.add_argument("--url", default=None,
                       help="a mirror holding the files under the names 'list' shows (default: $SYNTHSR_MODELS_URL, "
                            "else the publisher's address: FreeSurfer's git-annex remote for v2 and lowfield, "
                            "BBillot/SynthSR on GitHub for v1 and hyperfine)")
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
            f"(best validation loss {training.get('best_validation_loss')} at step {training.get('best_step')}); "
            f"synthsr-nipype {data.get('package_version')}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            print("search order: --model PATH, " + ", ".join(str(d) for d in search_dirs()))
            for name, info in MODELS.items():
                try:
                    where = str(resolve_model_path(name)[0])
                except SynthSRError:
                    where = "not found"
                print(f"{name:10s} {info.filename:36s} {info.sha256 or '(no published hash)'}  {where}")
                if where != "not found" and is_card_model(where):
                    print(f"{'':10s} card: {card_summary(read_card(where, runnable=False)[1])}")
            return EXIT_OK
        if args.command == "card":
            path, _ = resolve_model_path(args.model)
            print(read_card(path, runnable=False)[1].to_json())
            return EXIT_OK
        info = MODELS[args.name]
        print(f"fetching {info.filename} from {model_url(info, args.url)}", file=sys.stderr)
        path = fetch_model(args.name, dest_dir=args.dest, base_url=args.url, progress=not args.quiet)
        if info.sha256 is None:
            print(f"note: {info.name} has no published SHA-256; checked only that it is an HDF5 file "
                  f"(SHA-256 {sha256_file(path)})", file=sys.stderr)
        print(path)
        return EXIT_OK
    except SynthSRError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return exc.exit_code


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
