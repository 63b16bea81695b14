"""``synthsr-models``: list the known models and where they were found; fetch one."""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_OK, SynthSRError
from ..model.cache import sha256_file
from ..model.fetch import downloadable, fetch_model, model_url
from ..model.registry import MODELS, resolve_model_path, search_dirs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthsr-models", description="Find and download SynthSR weights.",
                                     epilog="exit codes: 0 success; 2 not found or download/verification failed")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="known models, their SHA-256 and where each was found")
    fetch = sub.add_parser("fetch", help="download a model (resumes a partial download, verifies SHA-256)")
    fetch.add_argument("name", choices=sorted(downloadable()))
    fetch.add_argument("--url", default=None,
                       help="a mirror holding the files under the names 'list' shows (default: $SYNTHSR_MODELS_URL, "
                            "else the publisher's address: FreeSurfer's git-annex remote for v2 and lowfield, "
                            "BBillot/SynthSR on GitHub for v1 and hyperfine)")
    fetch.add_argument("--dest", default=None, help="folder to write to (default: the user cache that is searched)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


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
