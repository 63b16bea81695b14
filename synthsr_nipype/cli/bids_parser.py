"""Command-line parser of ``synthsr-bids`` (nipreps conventions; the docs are generated from it)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from ..bids.query import DEFAULT_SUFFIXES
from ..morphometry import BACKENDS

EXIT_CODES = (
    "exit codes: 0 success (and --dry-run); 1 bad input (some selected scans not processed, "
    "one line each; dataset, label, filter, plugin, output or work place; no usable scan; at "
    "the group level: no participant volumes, or backends/models that would be mixed), a node "
    "failed (crash files in OUTPUT_DIR/logs) or interrupted (SIGINT/SIGTERM); 2 usage error or "
    "missing dependency (e.g. a model that is not installed, with how to get it; a GPU that "
    "is not there; FreeSurfer or its licence for a FreeSurfer --seg-backend); 3 a model file "
    "that is corrupted"
)


#: segmentation backends of --seg-backend (besides "none")
SEG_BACKENDS = BACKENDS


class DefaultStr(str):
    """A default value that tells it was not given on the command line (``--model`` selects
    the participant volumes at the group level only when given)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: file not found")
    return path.absolute()


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder not found")
    return path.absolute()


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps")


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors are one line naming the problem and where the usage is (exit 2), not the
    whole usage block."""

    def error(self, message: str):  # argparse's signature
        self.exit(2, f"ERROR: {message} (see {self.prog} --help)\n")


def get_parser() -> argparse.ArgumentParser:
    """Build the parser (also used by ``docs/gen_cli_docs.py``)."""
    from .. import __version__

    parser = OneLineErrorParser(
        prog="synthsr-bids",
        description=(
            "SynthSR BIDS-App: for every subject and session of a BIDS dataset, a synthetic 1 mm "
            "MP-RAGE-like image per anatomical scan and one fused subject-level image, written "
            "as BIDS derivatives by a resumable Nipype workflow."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bids_dir", type=_existing_dir, help="root of the BIDS dataset")
    parser.add_argument("output_dir", type=Path, help="root of the derivatives dataset to write")
    parser.add_argument(
        "analysis_level", choices=["participant", "group"],
        help="'participant': SynthSR, fusion and (with --seg-backend) morphometry of each "
        "subject/session; 'group': the volume tables, z-scores, figures and HTML page of "
        "OUTPUT_DIR/group from the participant outputs already in OUTPUT_DIR",
    )
    parser.add_argument("--version", action="version", version=f"synthsr-bids {__version__}")

    g_bids = parser.add_argument_group("BIDS selection")
    g_bids.add_argument(
        "--participant-label", "--participant_label", nargs="+", metavar="LABEL",
        help="subjects to process, with or without 'sub-' (default: all)",
    )
    g_bids.add_argument(
        "--session-label", "--session_label", nargs="+", metavar="LABEL",
        help="sessions to process, with or without 'ses-' (default: all)",
    )
    g_bids.add_argument(
        "--suffixes", nargs="+", metavar="SUFFIX", default=list(DEFAULT_SUFFIXES),
        help="anatomical suffixes to process",
    )
    g_bids.add_argument(
        "--bids-filter-file", type=_existing_file, metavar="FILE",
        help="JSON of pybids queries per lower-case suffix ('t1w', 'flair'...), 'anat' for all "
        "suffixes, 'reference' to choose the reference scan; null means the entity must be "
        "absent, \"*\" that it must be present",
    )
    g_bids.add_argument(
        "--bids-database-dir", type=Path, metavar="DIR",
        help="persistent pybids database (reused when it exists)",
    )
    g_bids.add_argument(
        "--skip-bids-validation", "--skip_bids_validation", action="store_true",
        help="index every file, not only those with valid BIDS names",
    )

    g_model = parser.add_argument_group("SynthSR")
    g_model.add_argument(
        "--model", default=DefaultStr("v2"),
        help="registry name (v2, lowfield, v1, hyperfine, lite), a Keras .h5, or a model trained with "
        "synthsr-train (.safetensors; its card's channels decide which scans form a multi-channel run)",
    )
    g_model.add_argument(
        "--general-model", default="v2",
        help="model for scans that a multi-channel --model does not take",
    )
    g_model.add_argument("--ct", action="store_true", help="the inputs are CT scans")
    g_model.add_argument(
        "--disable-flipping", action="store_true", help="no left-right flip averaging"
    )
    g_model.add_argument("--disable-sharpening", action="store_true", help="no sharpening")
    g_model.add_argument(
        "--fusion", choices=["median", "mean"], default="median",
        help="voxel-wise combination of a group's registered outputs",
    )
    g_model.add_argument(
        "--output-space", choices=["1mm", "native"], default="1mm",
        help="native: also write each scan's SynthSR output resampled onto that scan's grid and field of view "
             "(..._res-native_desc-synthsr<Suffix>_T1w.nii.gz; default 1mm: the 1 mm outputs only)",
    )
    g_model.add_argument(
        "--device", type=_device, default="auto", help="auto, cpu, cuda, cuda:N or mps (not part of the cache key)"
    )

    g_morph = parser.add_argument_group(
        "Morphometry",
        "segmentation, volumes and TBM of each fused image (see docs/morphometry.md); at the "
        "group level, --seg-backend and --model select which participant volumes to collect",
    )
    g_morph.add_argument(
        "--seg-backend", choices=["none", *SEG_BACKENDS], default="none",
        help="segmentation of the fused SynthSR image: 'ants' (embedded, pip only; "
        "~1 min per subject/session at --template-resolution 2, ~5 min at 1 on one thread), "
        "'synthseg' (the package's SynthSeg port, pip only, with QC scores), 'synthseg-fs' "
        "(FreeSurfer's mri_synthseg), 'recon-all', 'samseg' (FreeSurfer); 'none' runs SynthSR only (with "
        "--tbm: ants). At the group level: the backend whose volumes to collect ('none': any, "
        "but never mixed)",
    )
    g_morph.add_argument(
        "--tbm", action="store_true",
        help="also write the tensor-based-morphometry map (log-Jacobian in MNI152NLin2009aSym); "
        "alone, it implies --seg-backend ants",
    )
    g_morph.add_argument(
        "--thickness", action="store_true",
        help="also write the cortical thickness map and its table (DiReCT, antspyx kelly_kapowski, from the "
        "GM/WM posteriors of --seg-backend ants (per hemisphere) or synthseg (per cortical parcel with "
        "--synthseg-parc, else per hemisphere)); alone, it implies --seg-backend ants",
    )
    g_morph.add_argument(
        "--thickness-iterations", type=_positive_int, metavar="N",
        help="DiReCT iterations of --thickness (default 45, antsCorticalThickness.sh's; at least 3); each takes "
        "about a 45th of the time, and fewer read thinner",
    )
    g_morph.add_argument(
        "--template-resolution", type=int, choices=[1, 2], default=1, metavar="{1,2}",
        help="grid (mm) of the MNI152NLin2009aSym template used by the ants backend and TBM; "
        "2 is ~4x faster and coarser",
    )
    g_morph.add_argument(
        "--fs-license-file", type=_existing_file, metavar="FILE",
        help="FreeSurfer licence (recon-all); else $FS_LICENSE, else $FREESURFER_HOME/license.txt",
    )
    g_morph.add_argument(
        "--fs-subjects-dir", type=Path, metavar="DIR",
        help="SUBJECTS_DIR for recon-all (none: inside the work directory)",
    )
    g_morph.add_argument(
        "--synthseg-robust", action=argparse.BooleanOptionalAction, default=True,
        help="SynthSeg-robust (synthseg, synthseg-fs: --robust; better on clinical scans)",
    )
    g_morph.add_argument(
        "--synthseg-parc", action="store_true", help="SynthSeg's cortical parcellation (--parc)"
    )
    g_morph.add_argument(
        "--seg-models-dir", type=_existing_dir, metavar="DIR",
        help="folder of the synthseg_*.h5 weights of --seg-backend synthseg, used as given (default: "
        "$SYNTHSR_MODELS_DIR, $FREESURFER_HOME/models, the cache of 'synthsr-models fetch synthseg_2.0')",
    )

    g_perf = parser.add_argument_group("Performance")
    g_perf.add_argument(
        "--nprocs", "--nthreads", "--n_cpus", type=_positive_int, metavar="N",
        default=os.cpu_count() or 1, help="CPUs for all nodes together",
    )
    g_perf.add_argument(
        "--omp-nthreads", type=_positive_int, metavar="N",
        help="threads per SynthSR node (default: min(nprocs - 1, 8), at least 1)",
    )
    g_perf.add_argument(
        "--mem-gb", "--mem", type=_positive_float, metavar="GB", help="memory limit for MultiProc"
    )
    g_perf.add_argument(
        "--use-plugin", type=_existing_file, metavar="FILE.yml",
        help="Nipype plugin settings: YAML with 'plugin' and 'plugin_args'",
    )
    g_perf.add_argument(
        "--resource-monitor", action="store_true",
        help="record CPU/memory use of each node (logs/<run>/resource_monitor.jsonl)",
    )

    g_other = parser.add_argument_group("Other")
    g_other.add_argument(
        "-w", "--work-dir", type=Path, default=Path("work"), metavar="DIR",
        help="Nipype working directory (node caches; rerunning reuses finished nodes); "
        "not inside bids_dir",
    )
    g_other.add_argument(
        "--dry-run", action="store_true",
        help="print the plan (groups, scans, reference, runs, skipped scans and why) and exit "
        "without writing anything",
    )
    g_other.add_argument(
        "--reports-only", action="store_true",
        help="only (re)write the per-subject reports output_dir/sub-<label>.html from the outputs, "
        "logs and work folder of earlier runs, with the options the newest one recorded in "
        "logs/<run>/settings.json (model, backend, suffixes); nothing else runs",
    )
    g_other.add_argument(
        "--stop-on-first-crash", action="store_true", help="stop at the first failed node"
    )
    g_other.add_argument(
        "--write-graph", action="store_true", help="write the workflow graph into output_dir/logs"
    )
    g_other.add_argument(
        "-v", "--verbose", dest="verbose_count", action="count", default=0,
        help="more messages (-v: progress of nodes, -vv: debug)",
    )
    return parser
