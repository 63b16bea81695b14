"""pybids queries: the layout, the filter file and the anatomical scans to process."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BIDSInputError

#: Suffixes SynthSR accepts by default (any contrast, any resolution).
DEFAULT_SUFFIXES: tuple[str, ...] = ("T1w", "T2w", "FLAIR", "PDw", "T2starw")

#: Extensions of images (``.json`` sidecars share the entities and must not be taken).
IMAGE_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz")

#: Filter-file keys that are not suffix queries.
#: ``anat`` applies to every suffix; ``reference`` picks the reference scan of each group.
SPECIAL_FILTER_KEYS: tuple[str, ...] = ("anat", "reference")

if TYPE_CHECKING:  # pybids is imported lazily: the CLI's --help must stay fast
    from bids import BIDSLayout
    from bids.layout import BIDSFile


def _to_query(value: Any) -> Any:
    """Map nipreps' JSON conventions onto pybids queries (``null`` → NONE, ``"*"`` → ANY)."""
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == "*":
        return Query.ANY
    if isinstance(value, list):
        return [_to_query(v) for v in value]
    return value


def load_bids_filters(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read a ``--bids-filter-file``: ``{"t1w": {"acquisition": "MPRAGE"}, ...}``.

    Keys are suffixes in lower case (``t1w``, ``flair``...), ``anat`` (all suffixes) or
    ``reference`` (entities that choose the reference scan). Values are entity filters.
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BIDSInputError(f"{path}: BIDS filter file not found") from None
    except (OSError, ValueError) as exc:
        raise BIDSInputError(f"{path}: not a readable JSON file ({exc})") from None
    return parse_bids_filters(raw, source=str(path))


def parse_bids_filters(raw: Any, *, source: str = "filters") -> dict[str, dict[str, Any]]:
    """Validate and convert a filter mapping (see :func:`load_bids_filters`)."""
    if not isinstance(raw, Mapping):
        raise BIDSInputError(f"{source}: a BIDS filter must be a JSON object of queries")
    out: dict[str, dict[str, Any]] = {}
    for key, query in raw.items():
        if not isinstance(query, Mapping):
            raise BIDSInputError(f"{source}: filter {key!r} must be an object of entities")
        # Selection by subject/session goes through the labels, not the filters, so the
        # "no match" error can say which option matched nothing.
        bad = {"subject", "session", "datatype", "extension"} & set(query)
        if bad and key != "reference":
            raise BIDSInputError(
                f"{source}: filter {key!r} may not set {sorted(bad)}; use --participant-label/"
                "--session-label"
            )
        out[str(key).lower()] = {k: _to_query(v) for k, v in query.items()}
    return out


def build_layout(
    bids_dir: str | Path,
    *,
    database_dir: str | Path | None = None,
    validate: bool = True,
    reset_database: bool = False,
) -> BIDSLayout:
    """Index ``bids_dir`` with pybids (persistently when ``database_dir`` is given)."""
    from bids import BIDSLayout

    bids_dir = Path(bids_dir).resolve()
    if not (bids_dir / "dataset_description.json").is_file():
        raise BIDSInputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    from bids.layout import BIDSLayoutIndexer

    # Metadata is not indexed: one sidecar that is not JSON would stop the whole dataset, and
    # nothing here reads metadata through pybids (describe_scan checks each scan's sidecar).
    kwargs: dict[str, Any] = {
        "validate": validate,
        "indexer": BIDSLayoutIndexer(validate=validate, index_metadata=False),
    }
    if database_dir is not None:
        Path(database_dir).mkdir(parents=True, exist_ok=True)
        kwargs["database_path"] = str(database_dir)
        kwargs["reset_database"] = reset_database
    try:
        return BIDSLayout(str(bids_dir), **kwargs)
    except Exception as exc:  # pybids raises several unrelated types for broken datasets
        raise BIDSInputError(f"{bids_dir}: pybids cannot index this dataset ({exc})") from None


def suffix_queries(
    suffixes: Sequence[str], filters: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """One pybids query per suffix, with the filter file merged on top (as nipreps do)."""
    filters = dict(filters or {})
    unknown = set(filters) - {s.lower() for s in suffixes} - set(SPECIAL_FILTER_KEYS)
    if unknown:
        raise BIDSInputError(
            f"BIDS filter keys {sorted(unknown)} match no selected suffix ({', '.join(suffixes)})"
        )
    queries: dict[str, dict[str, Any]] = {}
    for suffix in suffixes:
        query: dict[str, Any] = {
            "datatype": "anat",
            "suffix": suffix,
            "extension": list(IMAGE_EXTENSIONS),
        }
        query.update(filters.get("anat", {}))
        query.update(filters.get(suffix.lower(), {}))
        queries[suffix] = query
    return queries


def collect_anat(
    layout: BIDSLayout,
    *,
    suffixes: Sequence[str] = DEFAULT_SUFFIXES,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[BIDSFile]:
    """Return the pybids files of the anatomical scans to process, sorted by path.

    Raises :class:`BIDSInputError` when a requested participant or session does not exist or
    when nothing matches (the message says which selection matched nothing).
    """
    subjects = layout.get_subjects()
    if participant_labels:
        missing = sorted(set(participant_labels) - set(subjects))
        if missing:
            raise BIDSInputError(
                f"participant label(s) {', '.join(missing)} not found in {layout.root}"
                f" (subjects: {', '.join(sorted(subjects)) or 'none'})"
            )
    if session_labels:
        sessions = layout.get_sessions(subject=participant_labels or None)
        missing = sorted(set(session_labels) - set(sessions))
        if missing:
            raise BIDSInputError(
                f"session label(s) {', '.join(missing)} not found"
                f" (sessions: {', '.join(sorted(sessions)) or 'none'})"
            )
    selection: dict[str, Any] = {}
    if participant_labels:
        selection["subject"] = list(participant_labels)
    if session_labels:
        selection["session"] = list(session_labels)

    files: dict[str, Any] = {}
    known = set(layout.get_entities()) | {"suffix", "extension", "datatype", "subject", "session"}
    for query in suffix_queries(suffixes, bids_filters).values():
        unknown = sorted(set(query) - known)
        if unknown:
            raise BIDSInputError(
                f"BIDS filter: unknown entit{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                f"(known entities: {', '.join(sorted(set(layout.get_entities())))})"
            )
        for bids_file in layout.get(**query, **selection):
            files[bids_file.path] = bids_file
    return [files[path] for path in sorted(files)]


def unindexed_scans(
    layout: BIDSLayout,
    *,
    suffixes: Sequence[str] = DEFAULT_SUFFIXES,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
) -> list[tuple[Path, str]]:
    """Entries of the selected ``anat`` folders named like a selected scan that pybids did not
    index (a folder, a space or a non-ASCII character in the name...), with the reason: they
    must not vanish without a word.  Paths matched by ``.bidsignore`` are left out."""
    import fnmatch

    root = Path(layout.root)
    ignore_file = root / ".bidsignore"
    ignored = [ln.strip() for ln in ignore_file.read_text(errors="replace").splitlines()
               if ln.strip() and not ln.startswith("#")] if ignore_file.is_file() else []
    indexed = set(layout.get(datatype="anat", return_type="filename"))
    endings = tuple(f"_{suffix}{ext}" for suffix in suffixes for ext in IMAGE_EXTENSIONS)
    subjects = [f"sub-{p}" for p in participant_labels] if participant_labels else None
    found: list[tuple[Path, str]] = []
    for sub in sorted(root.glob("sub-*")):
        if subjects is not None and sub.name not in subjects:
            continue
        sessions = [d for d in sorted(sub.glob("ses-*")) if d.is_dir()]
        if session_labels:
            sessions = [d for d in sessions if d.name[4:] in session_labels]
        for anat in [sub / "anat"] + [d / "anat" for d in sessions]:
            if not anat.is_dir():
                continue
            for entry in sorted(anat.iterdir()):
                rel = entry.relative_to(root).as_posix()
                if not entry.name.endswith(endings) or str(entry) in indexed:
                    continue
                if any(fnmatch.fnmatch(rel, pat.strip("/")) or fnmatch.fnmatch(entry.name, pat)
                       for pat in ignored):
                    continue
                if entry.is_dir():
                    found.append((entry, "is a folder, not an image"))
                else:
                    found.append((entry, "not a valid BIDS file name (pybids does not index it); "
                                         "rename it: letters and digits only in labels"))
    return found


def describe_selection(
    *,
    suffixes: Sequence[str],
    participant_labels: Sequence[str] | None,
    session_labels: Sequence[str] | None,
    bids_filters: Mapping[str, Any] | None,
) -> str:
    """Human description of the query, for "matched nothing" errors."""
    parts = [f"datatype anat, suffix {'|'.join(suffixes)}"]
    if participant_labels:
        parts.append(f"participant {'|'.join(participant_labels)}")
    if session_labels:
        parts.append(f"session {'|'.join(session_labels)}")
    if bids_filters:
        parts.append(f"filters {sorted(bids_filters)}")
    return ", ".join(parts)


@dataclass
class Selection:
    """The scans a run selects, as :func:`select_scans` finds them."""

    #: the indexed scans (pybids' files), for :func:`~synthsr_nipype.bids.plan.build_plan`
    files: list[Any] = field(default_factory=list)
    #: scans named like a selected one that pybids did not index, with the reason
    unindexed: list[tuple[Path, str]] = field(default_factory=list)
    #: the filter file's queries (``reference`` chooses a group's reference scan)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the selection in words, for "nothing matched (...)" lines
    description: str = ""


def select_scans(
    bids_dir: str | Path,
    *,
    suffixes: Sequence[str] = DEFAULT_SUFFIXES,
    participant_label: Sequence[str] | None = None,
    session_label: Sequence[str] | None = None,
    bids_filter_file: str | Path | None = None,
    database_dir: str | Path | None = None,
    validate: bool = True,
) -> Selection:
    """The one selection of a dataset's anatomical scans (``synthsr-bids`` and the ``BIDSPlan``
    interface): labels as users type them, the filter file, the layout, the indexed scans and the
    unindexed ones that must not vanish without a word."""
    from .labels import normalize_labels

    participants = normalize_labels(participant_label, "sub")
    sessions = normalize_labels(session_label, "ses")
    filters = load_bids_filters(bids_filter_file)
    layout = build_layout(bids_dir, database_dir=database_dir, validate=validate)
    files = collect_anat(layout, suffixes=suffixes, participant_labels=participants, session_labels=sessions,
                         bids_filters=filters)
    unindexed = unindexed_scans(layout, suffixes=suffixes, participant_labels=participants, session_labels=sessions)
    description = describe_selection(suffixes=suffixes, participant_labels=participants, session_labels=sessions,
                                     bids_filters=filters)
    return Selection(files=files, unindexed=unindexed, filters=filters, description=description)
