"""Finding a site's recordings: a BIDS tree with entity filters, or a manifest of files.

Discovery produces :class:`RecordingSpec` objects, picklable descriptions of one unit of
work, which the pipeline hands to worker processes (or, later, to a cluster executor).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from mne_bids import get_entities_from_fname

from sozstore.etl._docs import fill_doc
from sozstore.etl.config import SiteConfig
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


@fill_doc
def discover(config: SiteConfig) -> list[RecordingSpec]:
    """All recordings of a site, sorted by recording id.

    Parameters
    ----------
    %(config)s

    Returns
    -------
    list of RecordingSpec
        One per recording file, sorted by ``recording_id``.

    Raises
    ------
    FileNotFoundError
        If the layout's root (or manifest) does not exist.
    ValueError
        If two recordings get the same id.
    """
    root = config.layout.root
    if not root.is_dir():
        raise FileNotFoundError(f"{config.source}: layout.root {root} is not a folder")
    specs = _discover_bids(config) if config.layout.kind == "bids" else _discover_manifest(config)
    ids = [s.recording_id for s in specs]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"{config.source}: recordings with the same id: {sorted(dupes)}")
    return sorted(specs, key=lambda s: s.recording_id)


def _recording_id(site: str, subject: str, *parts: str | None) -> str:
    return "_".join(safe_component(p) for p in (site, subject, *parts) if p)


def _discover_bids(config: SiteConfig) -> list[RecordingSpec]:
    lay = config.layout
    root = lay.root
    specs = []
    for path in sorted(root.glob("sub-*/**/*")):
        suffix = path.suffix.lower()
        if suffix not in lay.extensions or not path.is_file():
            continue
        stem = path.name[: -len(path.suffix)]
        modality = next((m for m in SIGNAL_SUFFIXES if stem.endswith(m)), None)
        if modality is None:
            continue
        ent = get_entities_from_fname(path.name, on_error="ignore")
        subject = strip_bids_prefix(ent.get("subject"), "") or ""
        if not subject:
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
        path = (lay.root / file).resolve()
        store_subject = pseudonymise(subject, config)
        label = row.get(lay.recording_column) if lay.recording_column else None
        if label is None:
            label = hashlib.blake2b(file.encode(), digest_size=4).hexdigest()
        specs.append(RecordingSpec(
            site=config.name,
            recording_id=_recording_id(config.name, store_subject, label),
            subject=store_subject, source_subject=subject, path=path,
            source_path=Path(file).as_posix(),
            task=row.get(lay.task_column) if lay.task_column else None, run=label,
            # Only the configured columns travel: identifying columns of the manifest
            # (names, birth dates, hospital numbers) never leave this function.
            manifest_row={k: v for k, v in row.items() if k in wanted},
        ))
    return specs
