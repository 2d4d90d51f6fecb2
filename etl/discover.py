"""Finding a site's recordings: a BIDS tree with entity filters, or a manifest of files.

Discovery produces :class:`RecordingSpec` objects, picklable descriptions of one unit of
work, which the pipeline hands to worker processes (or, later, to a cluster executor).

A manifest row naming a file outside the site root is refused unless the config allows it,
and the store then keeps no path of the ingesting machine (:func:`manifest_file`); two
source subjects that would share a store id are refused (:func:`subject_collisions`); a BIDS
file whose subject has no safe id is skipped with a line (:func:`unsafe_subject_reason`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from mne_bids import get_entities_from_fname

from sozstore._logging import logger
from sozstore.etl._docs import fill_doc
from sozstore.etl.config import SiteConfig
from sozstore.etl.readers import format_extension
from sozstore.etl.tables import read_rows, strip_bids_prefix
from sozstore.store.layout import safe_component

SIGNAL_SUFFIXES = ("_ieeg", "_eeg")


@dataclass(frozen=True)
class RecordingSpec:
    """One recording to ingest.

    ``subject`` is the id written to the store (pseudonymised where the site asks),
    ``source_subject`` the id as written in the site's files (never stored for hashed sites).
    """

    site: str
    recording_id: str
    subject: str
    source_subject: str
    path: Path
    source_path: str
    session: str | None = None
    task: str | None = None
    acquisition: str | None = None
    run: str | None = None
    channels_tsv: Path | None = None
    events_tsv: Path | None = None
    sidecar_json: Path | None = None
    electrodes_tsv: Path | None = None
    manifest_row: dict[str, str | None] = field(default_factory=dict)


def pseudonymise(subject: str, config: SiteConfig) -> str:
    """The store's subject id: the source id, or a salted hash of it (``s`` + 10 hex)."""
    if config.subject_ids == "source":
        return safe_component(subject)
    digest = hashlib.blake2b(f"{config.hash_salt}\x00{config.name}\x00{subject}".encode(),
                             digest_size=5).hexdigest()
    return f"s{digest}"


_ALNUM = re.compile(r"[A-Za-z0-9]")


def unsafe_subject_reason(subject: str | None, config: SiteConfig) -> str | None:
    """Why a source subject id cannot become a store id, or ``None``.

    An empty id cannot; with ``subject_ids = 'source'`` neither can one without a letter or
    digit (``safe_component`` would make every such id ``x``, merging patients).
    """
    if not subject or not subject.strip():
        return "empty subject label"
    if config.subject_ids == "source" and not _ALNUM.search(subject):
        return (f"subject label {subject!r} has no letter or digit to keep as a store id "
                "(set subject_ids = 'hash')")
    return None


def subject_collisions(specs: list[RecordingSpec]) -> list[str]:
    """Store subject ids shared by different source subjects, one phrase each.

    ``safe_component`` maps ``q/r`` and ``q r`` to ``q-r``: two patients would merge
    silently in the store.
    """
    sources: dict[str, set[str]] = {}
    for spec in specs:
        sources.setdefault(spec.subject, set()).add(spec.source_subject)
    return [f"subjects {', '.join(repr(s) for s in sorted(names))} all become store id "
            f"{subject!r}" for subject, names in sorted(sources.items()) if len(names) > 1]


@fill_doc
def discover(config: SiteConfig, *, problems: list[str] | None = None
             ) -> list[RecordingSpec]:
    """All recordings of a site, sorted by recording id.

    Parameters
    ----------
    %(config)s
    problems : list of str, optional
        Files skipped because their subject cannot be mapped to a safe store id are
        appended here, one line each (and logged as warnings in any case).

    Returns
    -------
    list of RecordingSpec
        One per recording file, sorted by ``recording_id``.

    Raises
    ------
    FileNotFoundError
        If the layout's root (or manifest) does not exist.
    ValueError
        If two recordings get the same id, two source subjects the same store id, or a
        manifest row names a file outside the root that the config does not allow.
    """
    root = config.layout.root
    if not root.is_dir():
        raise FileNotFoundError(f"{config.source}: layout.root {root} is not a folder")
    skipped: list[str] = []
    specs = (_discover_bids(config, skipped) if config.layout.kind == "bids"
             else _discover_manifest(config))
    for line in skipped:
        logger.warning("%s", line)
    if problems is not None:
        problems.extend(skipped)
    ids = [s.recording_id for s in specs]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"{config.source}: recordings with the same id: {sorted(dupes)}")
    merged = subject_collisions(specs)
    if merged:
        raise ValueError(f"{config.source}: {merged[0]} (two patients would merge; rename "
                         "one at the source or set subject_ids = 'hash')"
                         + (f" (and {len(merged) - 1} more)" if len(merged) > 1 else ""))
    return sorted(specs, key=lambda s: s.recording_id)


def _recording_id(site: str, subject: str, *parts: str | None) -> str:
    return "_".join(safe_component(p) for p in (site, subject, *parts) if p)


def _discover_bids(config: SiteConfig, skipped: list[str]) -> list[RecordingSpec]:
    lay = config.layout
    root = lay.root
    specs = []
    for path in sorted(root.glob("sub-*/**/*")):
        # the extension that names the format (".fif.gz", not ".gz"), else the last one
        ext = format_extension(path) or path.suffix.lower()
        if ext not in lay.extensions or not path.is_file():
            continue
        stem = path.name[: -len(ext)]
        modality = next((m for m in SIGNAL_SUFFIXES if stem.endswith(m)), None)
        if modality is None:
            continue
        ent = get_entities_from_fname(path.name, on_error="ignore")
        subject = strip_bids_prefix(ent.get("subject"), "") or ""
        reason = unsafe_subject_reason(subject, config)
        if reason is not None:
            skipped.append(f"skipped {path.relative_to(root).as_posix()}: {reason}")
            continue
        if (lay.subjects and subject not in lay.subjects) \
                or (lay.sessions and ent.get("session") not in lay.sessions) \
                or (lay.tasks and ent.get("task") not in lay.tasks) \
                or (lay.acquisitions and ent.get("acquisition") not in lay.acquisitions):
            continue
        base = stem[: -len(modality)]
        folder = path.parent
        store_subject = pseudonymise(subject, config)
        specs.append(RecordingSpec(
            site=config.name,
            recording_id=_recording_id(config.name, store_subject, ent.get("session"),
                                       ent.get("task"), ent.get("acquisition"), ent.get("run")),
            subject=store_subject, source_subject=subject, path=path,
            source_path=path.relative_to(root).as_posix(),
            session=ent.get("session"), task=ent.get("task"),
            acquisition=ent.get("acquisition"), run=ent.get("run"),
            channels_tsv=_existing(folder / f"{base}_channels.tsv"),
            events_tsv=_existing(folder / f"{base}_events.tsv"),
            sidecar_json=_existing(folder / f"{stem}.json"),
            electrodes_tsv=_find_electrodes(folder, ent),
        ))
    return specs


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _find_electrodes(folder: Path, ent: dict[str, str | None]) -> Path | None:
    """The electrodes.tsv that belongs to a recording: same subject/session, matching acq if
    several exist (HUP keeps one per acq and space, RESPect one per session)."""
    candidates = sorted(folder.glob(f"sub-{ent['subject']}*_electrodes.tsv"))
    if not candidates:
        return None
    acq = ent.get("acquisition")
    if acq:
        same = [c for c in candidates if f"_acq-{acq}_" in c.name]
        if same:
            return same[0]
    return candidates[0]


def _discover_manifest(config: SiteConfig) -> list[RecordingSpec]:
    lay = config.layout
    assert lay.manifest is not None
    manifest = lay.root / lay.manifest
    if not manifest.is_file():
        raise FileNotFoundError(f"{config.source}: manifest {manifest} not found")
    rows = read_rows(manifest, delimiter=lay.manifest_delimiter)
    wanted = {lay.file_column, lay.subject_column, lay.recording_column, lay.task_column,
              lay.bad_column}
    for source in config.labels:
        if source.kind == "manifest":
            wanted.update({source.soz_column, source.resected_column})
    if config.outcome.table == "manifest":
        wanted.update({config.outcome.outcome_column, config.outcome.engel_column,
                       config.outcome.ilae_column})
    wanted.discard(None)
    specs = []
    for i, row in enumerate(rows, start=2):
        file = row.get(lay.file_column)
        subject = row.get(lay.subject_column)
        if file is None or subject is None:
            raise ValueError(f"{manifest}: line {i} lacks `{lay.file_column}` or "
                             f"`{lay.subject_column}`")
        path, source_path = manifest_file(lay.root, file, allow_outside_root=lay.allow_outside_root,
                                          where=f"{manifest}: line {i}")
        store_subject = pseudonymise(subject, config)
        label = row.get(lay.recording_column) if lay.recording_column else None
        if label is None:
            label = hashlib.blake2b(file.encode(), digest_size=4).hexdigest()
        specs.append(RecordingSpec(
            site=config.name,
            recording_id=_recording_id(config.name, store_subject, label),
            subject=store_subject, source_subject=subject, path=path,
            source_path=source_path,
            task=row.get(lay.task_column) if lay.task_column else None, run=label,
            # Only the configured columns travel: identifying columns of the manifest
            # (names, birth dates, hospital numbers) never leave this function.
            manifest_row={k: v for k, v in row.items() if k in wanted},
        ))
    return specs


#: The store's ``source_path`` prefix for a file outside the site root (allowed only with
#: ``layout.allow_outside_root``): ``outside-root/<hash of its folder>/<file name>``.
OUTSIDE_ROOT = "outside-root"


def manifest_file(root: Path, file: str, *, allow_outside_root: bool, where: str
                  ) -> tuple[Path, str]:
    """The file a manifest row names, and the ``source_path`` the store keeps for it.

    Parameters
    ----------
    root : Path
        The site's layout root.
    file : str
        The row's file cell, relative to the root (or absolute).
    allow_outside_root : bool
        Whether a file outside the root (``..``, an absolute path, a link leading out) may
        be ingested.
    where : str
        The manifest and line, for the message.

    Returns
    -------
    path : Path
        The resolved file (links followed).
    source_path : str
        Relative to the root, as written for a plain relative path; for a file outside the
        root only ``outside-root/<8 hex of its folder>/<name>``: the store never keeps the
        ingesting machine's absolute paths (they hold user names and folder structure).

    Raises
    ------
    ValueError
        If the file is outside the root and ``allow_outside_root`` is false.
    """
    written = Path(file)
    real_root = root.resolve()
    path = (root / written).resolve()
    inside = path.is_relative_to(real_root)
    if not inside:
        if not allow_outside_root:
            raise ValueError(f"{where}: file {file!r} is outside the site root (relative "
                             "'..', absolute path or a link leading out); move it under the "
                             "root or set layout.allow_outside_root = true")
        folder = hashlib.blake2b(str(path.parent).encode(), digest_size=4).hexdigest()
        return path, f"{OUTSIDE_ROOT}/{folder}/{path.name}"
    if written.is_absolute() or ".." in written.parts:
        return path, path.relative_to(real_root).as_posix()
    return path, written.as_posix()
