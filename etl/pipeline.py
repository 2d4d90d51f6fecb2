"""The ETL job: one site config in, signals and catalog fragments out.

One recording is the unit of work (:func:`ingest_recording`, a pure function of a picklable
:class:`~sozstore.etl.discover.RecordingSpec`); :func:`run_site` maps it over a site with any
``concurrent.futures.Executor`` (a local process pool by default; a Dask or Ray executor can
take its place), then writes the site-level tables (subjects, contacts, sites).

Promises
--------
* Memory is bounded by the block size: samples stream from the source through the notch and
  resampler into Zarr chunks.
* Each recording has its own store rate (``SiteConfig.store_rate``: a whole multiple of the
  site's ``store_sfreq`` up to ``store_sfreq_max``), in ``recordings.sfreq`` and the Zarr
  attributes; readers take it from there.
* Atomic and idempotent: every file is written under a temporary name and renamed; a
  recording's ``recordings`` row is written last, as its commit marker (readers show its
  channels and events only once it exists; a re-ingest deletes the old row before it
  replaces the signal); a recording whose inputs fingerprint (source size and mtime,
  sidecars, label rows, parameters) is unchanged is skipped, and site tables are rewritten
  only when their content changes.
* Concurrent runs lose nothing (docs/commit-protocol.md): a run holds a lease on its
  temporaries and removes only those of dead runs; two runs of one site take turns on the
  site's writer lock (the second waits, then finds the work done); workers die with the
  run that started them.
* Bad input gives one line per file in the report and the job goes on.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tqdm.auto import tqdm

import sozstore
from sozstore._logging import logger
from sozstore.etl._docs import fill_doc
from sozstore.etl.channels import (
    ChannelKey,
    TypePatternTimeoutError,
    canonical_keys,
    canonical_name,
    decide_types,
    mne_unique_names,
    split_contact,
    tsv_disagreement,
    type_override_counts,
)
from sozstore.etl.config import SiteConfig
from sozstore.etl.discover import RecordingSpec, discover
from sozstore.etl.dsp import NOTCH_Q, ChannelMoments, ResamplePlan
from sozstore.etl.events import (
    ClassifiedEvent,
    RuleTimeoutError,
    classify_events,
    events_tsv_rows,
)
from sozstore.etl.labels import RecordingLabels, cached_rows, derive_labels, external_row
from sozstore.etl.outcome import normalise_outcome
from sozstore.etl.readers import RecordingError, SourceRecording, open_recording
from sozstore.etl.tables import TableError, read_rows
from sozstore.store import Store, StoreLike
from sozstore.store.atomic import clean_temporaries
from sozstore.store.catalog import to_table, write_fragment
from sozstore.store.locks import (
    LOCK_WAIT_S,
    StoreBusy,
    bind_worker_to_parent,
    run_lease,
    site_lock_name,
    writer_locks,
)
from sozstore.store.signals import SignalWriter
from sozstore.store.verify import Damage, recording_intact

#: Bumped when the ETL changes what it writes for the same inputs (forces re-ingest).
#: 2: constant-width mains notches (etl/dsp.py) and per-recording store rates
#: (``SiteConfig.store_rate``: 2-kHz sources keep 2 kHz).
ETL_VERSION = "2"
#: Source samples held in memory per block (float64), before margins.
BLOCK_BYTES = 32 * 2**20
LABEL_RULE = ("union: a contact is SOZ (resected) for the subject if any of its recordings "
              "labels it so; `conflict` marks contacts whose labelled recordings disagree")


@dataclass
class RecordingResult:
    """What happened to one recording."""

    recording_id: str
    source_path: str
    status: str  # "ingested", "up to date", "failed"
    messages: list[str] = field(default_factory=list)
    n_channels: int = 0
    duration_s: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class RunReport:
    """The report of one ``sozstore etl`` run."""

    site: str
    store: str
    results: list[RecordingResult]
    site_errors: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(not r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        """0: success; 1: partial success (some recordings failed); 2: nothing succeeded."""
        if not self.results or (self.n_failed == len(self.results)):
            return 2
        return 1 if self.n_failed or self.site_errors else 0

    def lines(self) -> list[str]:
        """One line per problem: the file and the reason."""
        out = list(self.site_errors)
        for r in self.results:
            for m in r.messages:
                out.append(f"{'FAILED' if not r.ok else 'warning'} {r.source_path}: {m}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "store": self.store, "exit_code": self.exit_code,
                "site_errors": self.site_errors,
                "recordings": [r.__dict__ for r in self.results]}


#: glibc's ``mallopt`` parameter number of the mmap threshold (``malloc.h``).
_M_MMAP_THRESHOLD = -3
#: Allocations from this size up get their own mapping, returned whole when freed: glibc's
#: initial threshold, kept fixed (see :func:`pin_mmap_threshold`).
MMAP_THRESHOLD_BYTES = 128 * 2**10


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc malloc's mmap threshold for this process, so that streaming does not grow
    the heap with the recording's length.

    glibc raises its threshold to the size of each mapped block that is freed (up to
    32 MiB), after which the stream's per-block and per-chunk buffers (samples, filter
    state, compressed and checksummed chunks) come from the heap, whose freed pieces
    fragment and are not returned. Measured with
    ``tests/test_etl_behaviour.py::test_memory_bounded_by_chunk_not_length`` (64 channels,
    1 kHz): peak RSS 3 min -> 15 min grew 94-116 MiB with the dynamic threshold and 2-3 MiB
    with it fixed at 128 KiB, at a lower peak (351 vs 400 MiB). Setting it turns glibc's
    adjustment off (``mallopt(3)``).

    Parameters
    ----------
    threshold : int
        Bytes from which an allocation is mapped on its own.

    Returns
    -------
    bool
        Whether it was set (False off Linux or without glibc: their allocators differ).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


# --------------------------------------------------------------------------- fingerprints
def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


def _companions(path: Path) -> list[Path]:
    """Files a recording's samples live in (BrainVision keeps them beside the header)."""
    if path.suffix.lower() != ".vhdr":
        return [path]
    out = [path]
    text = path.read_text(encoding="latin-1", errors="replace")
    for key in ("DataFile", "MarkerFile"):
        match = re.search(rf"^{key}=(.+)$", text, re.MULTILINE)
        if match and (path.parent / match[1].strip()).exists():
            out.append(path.parent / match[1].strip())
    return out


@fill_doc
def inputs_fingerprint(spec: RecordingSpec, config: SiteConfig) -> str:
    """A hash of everything that determines what the ETL writes for ``spec``.

    Parameters
    ----------
    spec : RecordingSpec
        The recording, as discovered.
    %(config)s

    Returns
    -------
    str
        SHA-256 (hex) over :data:`ETL_VERSION`, the config's parameters and sections, the
        source files' names, sizes and modification times, the sidecars' bytes and the
        recording's external label rows.
    """
    parts: dict[str, Any] = {
        "etl": ETL_VERSION,
        "params": config.fingerprint_params(),
        "channels_cfg": repr(config.channels),
        "labels_cfg": repr(config.labels),
        "events_cfg": repr(config.events),
        "manifest_row": spec.manifest_row,
        "signal": [_file_identity(p) for p in _companions(spec.path)] if spec.path.exists()
        else None,
    }
    for name in ("channels_tsv", "events_tsv", "electrodes_tsv"):
        path = getattr(spec, name)
        parts[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path else None
    for i, src in enumerate(config.labels):
        if src.kind == "external" and src.path is not None and src.path.is_file():
            row = external_row(cached_rows(src.path, src.delimiter), src.subject_column,
                               spec.source_subject)
            parts[f"external{i}"] = row
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def source_sha256(path: Path) -> str:
    """SHA-256 over the bytes of the recording's files, streamed."""
    digest = hashlib.sha256()
    for part in _companions(path):
        with open(part, "rb") as fh:
            for chunk in iter(lambda: fh.read(8 * 2**20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def is_up_to_date(store: Store, spec: RecordingSpec, fingerprint: str) -> bool:
    """Whether the store already holds ``spec`` ingested from the same inputs."""
    frag = store.fragment("recordings", spec.site, spec.subject, spec.recording_id)
    if not frag.exists() or not store.zarr_path(spec.site, spec.recording_id).exists():
        return False
    try:
        stored = pq.read_table(frag, columns=["inputs_fingerprint"]).column(0).to_pylist()
    except Exception:  # noqa: BLE001 - an unreadable fragment means "redo it"
        return False
    return stored == [fingerprint]


def stored_damage(store: Store, spec: RecordingSpec, *, deep: bool = False) -> list[Damage]:
    """The damaged objects of a recording the store holds (its Zarr group and catalog
    fragments), empty when it is intact or not stored: :func:`run_site` calls a recording
    up to date only if its fingerprint matches and this is empty, and ingests a damaged
    one again.

    Parameters
    ----------
    store : Store
        The opened store.
    spec : RecordingSpec
        The recording, as discovered.
    deep : bool
        Check every stored byte (chunk CRC-32C, Parquet page checksums); else the quick
        check of :func:`~sozstore.store.verify.recording_intact`: Zarr metadata, every
        chunk file present (and longer than its checksum), Parquet footers. The quick
        check misses a flipped byte inside a chunk or page, which ``sozstore verify`` (deep
        by default) finds; ``run_site(..., deep_check=True)`` then repairs it.

    Returns
    -------
    list of Damage
        Empty when intact, or when the store has no ``recordings`` row for it.
    """
    if not store.fragment("recordings", spec.site, spec.subject, spec.recording_id).exists():
        return []
    return recording_intact(store, spec.site, spec.recording_id, deep=deep)


# --------------------------------------------------------------------------- one recording
def _dedupe(keys: list[ChannelKey]) -> tuple[list[ChannelKey], list[int], list[str]]:
    """Make channel keys unique; return the keys, the indices of duplicates and messages.

    MNE renames repeated (or empty) labels ``X-0``, ``X-1``; normalisation can also map two
    spellings onto one key. Every copy is kept (suffixed ``~1``, ``~2``) and flagged bad.
    """
    base_of: dict[int, str] = {}
    for i, k in enumerate(keys):
        # MNE numbers the copies of a repeated label from -0; electrode-contact names of
        # real files (HUP "LAF14-1".."LAF14-8") start at -1 and are not duplicates.
        match = re.match(r"^(.*)-(\d+)$", k.raw)
        raws = {o.raw for o in keys}
        if match and f"{match[1]}-0" in raws and f"{match[1]}-1" in raws:
            base_of[i] = match[1]
    fixed = list(keys)
    for i, base in base_of.items():
        channel = canonical_name(base)
        electrode, contact = split_contact(channel)
        # "X-0" is a copy of X, never a bipolar pair
        fixed[i] = replace(keys[i], channel=channel, electrode=electrode, contact=contact,
                           cathode=None)
    seen: dict[str, int] = {}
    dupes: list[int] = []
    counts: dict[str, int] = {}
    for k in fixed:
        counts[k.channel] = counts.get(k.channel, 0) + 1
    out = []
    for i, k in enumerate(fixed):
        if counts[k.channel] > 1:
            dupes.append(i)
            n = seen.get(k.channel, 0)
            seen[k.channel] = n + 1
            k = replace(k, channel=f"{k.channel}~{n}")
        out.append(k)
    messages = []
    if dupes:
        names = sorted({fixed[i].channel for i in dupes})
        messages.append(f"duplicate channel names {', '.join(names)}: copies kept as "
                        "NAME~0, NAME~1 and marked bad")
    return out, dupes, messages


def _check_tsv_agreement(rec: SourceRecording, rows: list[dict[str, str | None]],
                         tsv: Path) -> None:
    """Raise unless ``channels.tsv`` (``rows``) names the file's channels.

    A tsv that lists the file's duplicates as the file has them (``X``, ``X`` for the
    reader's ``X-0``, ``X-1``) agrees (:func:`~sozstore.etl.channels.tsv_disagreement`).
    """
    names = [r.get("name") for r in rows]
    if any(n is None for n in names):
        raise RecordingError(tsv, "channels.tsv has rows without a name")
    problem = tsv_disagreement(rec.names, [n for n in names if n is not None])
    if problem:
        raise RecordingError(rec.path, problem)


def _event_rows(spec: RecordingSpec, rec: SourceRecording,
                events_rows: list[dict[str, str | None]] | None,
                messages: list[str]) -> list[tuple[float, float, str]]:
    """The recording's markers ``(onset_s, duration_s, text)``: its events.tsv rows when it
    has one (rows dropped for an onset that is not a number are reported in ``messages``),
    else the file's own annotations."""
    if events_rows is not None:
        markers, warnings = events_tsv_rows(events_rows)
        messages.extend(warnings)
        return markers
    return rec.annotations()


@dataclass
class _SourceChannels:
    """What the read step learns about a recording's channels (aligned with its file)."""

    keys: list[ChannelKey]
    types: list[str]
    duplicates: list[int]
    channels_rows: list[dict[str, str | None]] | None
    events_rows: list[dict[str, str | None]] | None
    #: where each type came from (:attr:`~sozstore.etl.channels.TypeDecision.source`)
    type_sources: list[str] = field(default_factory=list)


@dataclass
class _StoredSignal:
    """What the stream step wrote: where, at which rate, and the channels' moments."""

    zarr_path: Path
    sfreq: float
    n_samples: int
    source_sha256: str
    moments: ChannelMoments


def _read_channels(spec: RecordingSpec, rec: SourceRecording, config: SiteConfig,
                   messages: list[str]) -> _SourceChannels:
    """Read step: the sidecar tables, and the channels' keys and types.

    Parameters
    ----------
    spec : RecordingSpec
        The recording, as discovered.
    rec : SourceRecording
        Its opened source (header read, samples not).
    config : SiteConfig
        Its site's config.
    messages : list of str
        Warnings are appended here (duplicate names).

    Returns
    -------
    _SourceChannels
        Keys (unique, duplicates suffixed), types, the duplicates' indices and the
        ``channels.tsv`` / ``events.tsv`` rows (``None`` without the file).

    Raises
    ------
    RecordingError
        If a sidecar table cannot be read or ``channels.tsv`` names other channels.
    """
    try:
        channels_rows = read_rows(spec.channels_tsv) if spec.channels_tsv else None
        events_rows = read_rows(spec.events_tsv) if spec.events_tsv else None
    except TableError as err:
        raise RecordingError(spec.path, str(err)) from None
    if channels_rows is not None:
        _check_tsv_agreement(rec, channels_rows, spec.channels_tsv)  # type: ignore[arg-type]
    keys, dupes, dedupe_messages = _dedupe(canonical_keys(rec.names, config.channels))
    messages.extend(dedupe_messages)
    # keyed by the reader's names: a duplicate listed twice (X, X) is the file's,
    # so each copy gets its own row's type
    tsv_by_raw = dict(zip(mne_unique_names([r.get("name") or "" for r in channels_rows or []]),
                          channels_rows or []))
    tsv_types = [(tsv_by_raw.get(n) or {}).get("type") for n in rec.names]
    decisions = decide_types(keys, tsv_types=tsv_types, file_types=rec.file_types,
                             config=config.channels)
    types = [d.type for d in decisions]
    # a rule that replaces the type the file or tsv stated says so, once per rule (issue 12)
    for rule, stated in type_override_counts(decisions).items():
        was = ", ".join(f"{n} {t}" for t, n in sorted(stated.items()))
        messages.append(f"type rule {rule} overrode the stated type of "
                        f"{sum(stated.values())} channels (stated: {was})")
    # Shaft and contact index describe intracranial contacts only (C3 is a scalp
    # position, EKG1 a lead).
    keys = [k if t in ("seeg", "ecog") else replace(k, electrode=None, contact=None)
            for k, t in zip(keys, types)]
    return _SourceChannels(keys, types, dupes, channels_rows, events_rows,
                           [d.source for d in decisions])


def _label_channels(spec: RecordingSpec, source: _SourceChannels, config: SiteConfig,
                    messages: list[str]) -> RecordingLabels:
    """Labels step: SOZ, resection, bad flags and coordinates of every channel.

    Labels come from all channels, duplicates included, before any is flagged bad; the
    duplicates are flagged after (:func:`~sozstore.etl.labels.derive_labels`).
    """
    labels = derive_labels(spec, source.keys, config, channels_rows=source.channels_rows,
                           events_rows=source.events_rows)
    messages.extend(labels.warnings)
    for i in source.duplicates:
        labels.bad[i] = True
        labels.bad_reason[i] = "duplicate name"
    return labels


def _recording_events(spec: RecordingSpec, rec: SourceRecording,
                      events_rows: list[dict[str, str | None]] | None, config: SiteConfig,
                      messages: list[str]) -> list[ClassifiedEvent]:
    """Events step: the recording's markers, classified by the site's rules.

    Unrecognised texts and markers outside the recording are kept and reported in
    ``messages``.
    """
    duration_src = rec.n_samples / rec.sfreq
    events = classify_events(_event_rows(spec, rec, events_rows, messages), config.events)
    unknown = sorted({e.raw_text for e in events if e.kind == "unknown"})
    if unknown:
        shown = "; ".join(repr(u) for u in unknown[:4]) + (" ..." if len(unknown) > 4 else "")
        messages.append(f"{len(unknown)} unrecognised event text(s) kept as "
                        f"kind 'unknown': {shown}")
    outside = [e for e in events if not _in_recording(e, duration_src)]
    if outside:
        messages.append(f"{len(outside)} event(s) outside the recording "
                        f"(0-{duration_src:.1f} s), kept with in_recording=false")
    return events


def _in_recording(event: ClassifiedEvent, duration_s: float) -> bool:
    return 0.0 <= event.onset_s <= duration_s + 1e-6


def _stream_blocks(rec: SourceRecording, plan: ResamplePlan, writer: SignalWriter, *,
                   desc: str, progress: bool, position: int) -> ChannelMoments:
    """Stream step: notch and resample ``rec`` block by block into ``writer``.

    Returns the moments of the source samples (block cores, before filtering), from which
    flat and empty channels are found.
    """
    n_ch = len(rec.names)
    block_s = float(np.clip(BLOCK_BYTES / (8 * max(n_ch, 1) * rec.sfreq), 5.0, 120.0))
    blocks = plan.blocks(rec.n_samples, plan.block_length(block_s))
    moments = ChannelMoments.zeros(n_ch)
    bar = tqdm(total=len(blocks), desc=desc, unit="block", leave=False,
               position=position, disable=not progress or None, dynamic_ncols=True)
    with bar:
        for read_start, core_start, core_stop, read_stop in blocks:
            data = rec.read(read_start, read_stop)
            moments = moments.update(data[:, core_start - read_start:core_stop - read_start])
            writer.append(plan.process(data, read_start, core_start, core_stop, rec.n_samples))
            bar.update(1)
    return moments


def _write_signal(spec: RecordingSpec, rec: SourceRecording, keys: list[ChannelKey],
                  config: SiteConfig, store: Store, *, progress: bool,
                  position: int) -> _StoredSignal:
    """Write step, signal: stream the samples into the recording's Zarr group and commit.

    The store rate is per recording (a 2-kHz source keeps 2 kHz for fast ripples, a 1-kHz
    one 1 kHz: ``SiteConfig.store_rate``). Nothing is left visible if streaming fails.
    """
    store_sfreq = config.store_rate(rec.sfreq)
    plan = ResamplePlan(rec.sfreq, store_sfreq, config.mains_hz)
    n_out = plan.n_out(rec.n_samples)
    sha = source_sha256(spec.path)
    params = {**config.fingerprint_params(), "notch_q": NOTCH_Q,
              "notch_width": "constant", "resample_up": plan.up,
              "resample_down": plan.down, "source_sfreq": rec.sfreq}
    zpath = store.zarr_path(spec.site, spec.recording_id)
    writer = SignalWriter(zpath, n_channels=len(keys), n_samples=n_out, sfreq=store_sfreq,
                          attrs={
                              "recording_id": spec.recording_id, "site": spec.site,
                              "subject": spec.subject, "channels": [k.channel for k in keys],
                              "sfreq": store_sfreq, "units": "uV",
                              "source_sha256": sha, "source_format": rec.format,
                              "sozstore_version": sozstore.__version__,
                              "etl_version": ETL_VERSION, "params": params,
                          })
    try:
        moments = _stream_blocks(rec, plan, writer, desc=spec.recording_id[:40],
                                 progress=progress, position=position)
        # un-commit the recording before its signal is replaced, so that no reader sees the
        # old row beside the new signal, channels or events (the new row re-commits it)
        store.fragment("recordings", spec.site, spec.subject,
                       spec.recording_id).unlink(missing_ok=True)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return _StoredSignal(zpath, store_sfreq, n_out, sha, moments)


def _flag_from_moments(labels: RecordingLabels, keys: list[ChannelKey],
                       moments: ChannelMoments, flat_threshold_uv: float,
                       messages: list[str]) -> None:
    """Flag channels without finite samples, or flatter than ``flat_threshold_uv``, bad."""
    count, std = moments.count, moments.std
    for i in range(len(keys)):
        if count[i] == 0:
            labels.bad[i] = True
            labels.bad_reason[i] = _join(labels.bad_reason[i], "no data (all NaN)")
        elif std[i] < flat_threshold_uv:
            labels.bad[i] = True
            labels.bad_reason[i] = _join(labels.bad_reason[i], f"flat (sd {std[i]:.3g} uV)")
    flat = [keys[i].channel for i in range(len(keys))
            if count[i] and std[i] < flat_threshold_uv]
    if flat:
        messages.append(f"flat channel(s) marked bad: {', '.join(flat[:8])}"
                        + (" ..." if len(flat) > 8 else ""))
    nonfinite = moments.n_nonfinite
    if nonfinite.any():
        which = [keys[i].channel for i in np.flatnonzero(nonfinite)]
        messages.append(f"NaN samples in {len(which)} channel(s) "
                        f"({', '.join(which[:6])}{' ...' if len(which) > 6 else ''}); "
                        "kept as NaN in the store")


def _write_catalog(store: Store, spec: RecordingSpec, rec: SourceRecording,
                   keys: list[ChannelKey], types: list[str], labels: RecordingLabels,
                   events: list[ClassifiedEvent], signal: _StoredSignal, config: SiteConfig,
                   fingerprint: str, warnings: list[str],
                   type_sources: list[str] | None = None) -> None:
    """Write step, catalog: the channels and events fragments, then the recordings row.

    The ``recordings`` row goes last: it is the commit marker :func:`is_up_to_date` reads.
    """
    common = {"recording_id": spec.recording_id, "site": spec.site, "subject": spec.subject}
    channel_rows = []
    for i, k in enumerate(keys):
        x, y, z = labels.xyz[i]
        channel_rows.append({
            **common, "channel": k.channel, "raw_name": k.raw, "index": i, "type": types[i],
            "electrode": k.electrode, "contact": k.contact, "bad": labels.bad[i],
            "bad_reason": labels.bad_reason[i], "soz": labels.soz[i],
            "resected": labels.resected[i], "label_source": labels.source[i],
            "x": x, "y": y, "z": z, "bipolar": k.bipolar, "cathode": k.cathode,
            "type_source": type_sources[i] if type_sources else None,
        })
    write_fragment(store, "channels", to_table("channels", channel_rows), site=spec.site,
                   subject=spec.subject, part=spec.recording_id)
    duration_src = rec.n_samples / rec.sfreq
    event_rows = [{**common, "onset_s": e.onset_s, "duration_s": e.duration_s,
                   "kind": e.kind, "raw_text": e.raw_text, "rule": e.rule,
                   "in_recording": _in_recording(e, duration_src)}
                  for e in events]
    write_fragment(store, "events", to_table("events", event_rows), site=spec.site,
                   subject=spec.subject, part=spec.recording_id)
    rec_row = {
        **common, "session": spec.session, "task": spec.task,
        "acquisition": spec.acquisition, "run": spec.run, "source_path": spec.source_path,
        "source_format": rec.format, "source_sha256": signal.source_sha256,
        "source_sfreq": rec.sfreq, "sfreq": signal.sfreq, "n_samples": signal.n_samples,
        "duration_s": signal.n_samples / signal.sfreq, "n_channels": len(keys),
        "n_bad": int(sum(labels.bad)),
        "bandwidth_hz": 0.5 * min(rec.sfreq, signal.sfreq),
        "mains_hz": config.mains_hz,
        "zarr_path": store.relative(signal.zarr_path),
        "inputs_fingerprint": fingerprint, "sozstore_version": sozstore.__version__,
        "warnings": list(warnings),
    }
    write_fragment(store, "recordings", to_table("recordings", [rec_row]), site=spec.site,
                   subject=spec.subject, part=spec.recording_id)


@fill_doc
def ingest_recording(spec: RecordingSpec, config: SiteConfig, store: StoreLike, *,
                     fingerprint: str | None = None, progress: bool = True,
                     position: int = 0) -> RecordingResult:
    """Ingest one recording into the store (see the module docstring).

    The steps: read the source's header and channels (:func:`_read_channels`); derive the
    labels (:func:`_label_channels`) and classify the events (:func:`_recording_events`);
    stream the samples through the notch and resampler into Zarr, with the channels'
    running moments (:func:`_write_signal`); flag flat and empty channels from the moments
    (:func:`_flag_from_moments`); write the catalog fragments, the recordings row last
    (:func:`_write_catalog`). Never raises for bad input: problems come back in the
    result's messages, with status ``failed`` when nothing was written.

    Parameters
    ----------
    spec : RecordingSpec
        The recording, as discovered.
    %(config)s
    %(store)s
    fingerprint : str, optional
        Its inputs' fingerprint, when the caller computed it already.
    %(progress)s
    position : int
        The progress bar's line (one per worker).

    Returns
    -------
    RecordingResult
        Status, messages, channel count, duration and time taken.
    """
    start_time = time.perf_counter()
    pin_mmap_threshold()  # here, so that any executor's process gets it (cheap to repeat)
    result = RecordingResult(spec.recording_id, spec.source_path, "ingested")
    messages = result.messages
    rec: SourceRecording | None = None
    try:
        store = Store.open(store)
        fingerprint = fingerprint or inputs_fingerprint(spec, config)
        rec = open_recording(spec.path, limits=config.limits)
        messages.extend(rec.warnings)  # e.g. channels recorded at another rate (mixed-rate EDF)
        source = _read_channels(spec, rec, config, messages)
        labels = _label_channels(spec, source, config, messages)
        events = _recording_events(spec, rec, source.events_rows, config, messages)
        signal = _write_signal(spec, rec, source.keys, config, store, progress=progress,
                               position=position)
        _flag_from_moments(labels, source.keys, signal.moments, config.flat_threshold_uv,
                           messages)
        _write_catalog(store, spec, rec, source.keys, source.types, labels, events, signal,
                       config, fingerprint, messages, source.type_sources)
        result.n_channels = len(source.keys)
        result.duration_s = signal.n_samples / signal.sfreq
    except RecordingError as err:
        result.status = "failed"
        result.messages.append(err.reason if str(spec.path) in str(err) else str(err))
    except (RuleTimeoutError, TypePatternTimeoutError) as err:
        # a site rule that hangs on this recording's texts: its one line names the rule
        result.status = "failed"
        result.messages.append(str(err))
    except Exception as err:  # noqa: BLE001 - one bad recording must not stop the site
        logger.debug("ingest of %s failed", spec.path, exc_info=True)
        result.status = "failed"
        result.messages.append(f"{type(err).__name__}: {err}")
    finally:
        if rec is not None:
            rec.close()
    result.seconds = time.perf_counter() - start_time
    return result


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b


# --------------------------------------------------------------------------- site level
def _outcome_rows(config: SiteConfig, specs: list[RecordingSpec]) -> dict[str, dict[str, Any]]:
    """Normalised outcome per store subject id."""
    oc = config.outcome
    out: dict[str, dict[str, Any]] = {}
    if oc.table == "none":
        return out
    by_source = {s.source_subject: s.subject for s in specs}
    if oc.table == "manifest":
        for s in specs:
            row = s.manifest_row
            out.setdefault(s.subject, normalise_outcome(
                row.get(oc.outcome_column) if oc.outcome_column else None,
                row.get(oc.engel_column) if oc.engel_column else None,
                row.get(oc.ilae_column) if oc.ilae_column else None,
                value_map=oc.value_map).__dict__)
        return out
    path = oc.path if oc.table == "external" else (
        config.layout.root / config.layout.participants if config.layout.participants else None)
    if path is None or not path.is_file():
        return out
    rows = read_rows(path)
    for source_subject, subject in by_source.items():
        subject_row = external_row(rows, oc.subject_column, source_subject)
        if subject_row is None:
            continue
        out[subject] = normalise_outcome(
            subject_row.get(oc.outcome_column) if oc.outcome_column else None,
            subject_row.get(oc.engel_column) if oc.engel_column else None,
            subject_row.get(oc.ilae_column) if oc.ilae_column else None,
            value_map=oc.value_map).__dict__
    return out


@fill_doc
def write_site_tables(config: SiteConfig, store: Store, specs: list[RecordingSpec]) -> None:
    """Write ``subjects``, ``contacts`` and ``sites`` for a site from its catalog fragments.

    Each file is rewritten only if its content changed.

    Parameters
    ----------
    %(config)s
    store : Store
        The opened store.
    specs : list of RecordingSpec
        The site's recordings, as discovered (their manifest rows hold outcomes).
    """
    site = config.name
    channels = store.read("channels").filter(pl.col("site") == site)
    recordings = store.read("recordings").filter(pl.col("site") == site)
    contacts = (
        channels.group_by("subject", "channel")
        .agg(
            pl.col("electrode").first(), pl.col("contact").first(),
            pl.col("recording_id").n_unique().alias("n_recordings"),
            pl.col("soz").sum().cast(pl.Int64).alias("n_soz"),
            pl.col("soz").is_not_null().sum().cast(pl.Int64).alias("n_soz_labelled"),
            pl.col("resected").sum().cast(pl.Int64).alias("n_resected"),
            pl.col("resected").is_not_null().sum().cast(pl.Int64).alias("n_res_labelled"),
        )
        .with_columns(
            pl.when(pl.col("n_soz_labelled") > 0).then(pl.col("n_soz") > 0).alias("soz"),
            pl.when(pl.col("n_res_labelled") > 0).then(pl.col("n_resected") > 0)
            .alias("resected"),
            (((pl.col("n_soz") > 0) & (pl.col("n_soz") < pl.col("n_soz_labelled")))
             | ((pl.col("n_resected") > 0)
                & (pl.col("n_resected") < pl.col("n_res_labelled")))).alias("conflict"),
            pl.lit(site).alias("site"),
        )
        .sort("subject", "channel")
    )
    outcomes = _outcome_rows(config, specs)
    subjects = sorted(set(recordings["subject"].to_list()))
    for subject in subjects:
        sub_contacts = contacts.filter(pl.col("subject") == subject)
        write_fragment(store, "contacts", to_table("contacts", sub_contacts.to_dicts()),
                       site=site, subject=subject, part="contacts", if_changed=True)
        oc = outcomes.get(subject, {})
        row = {"site": site, "subject": subject, **oc,
               "n_recordings": recordings.filter(pl.col("subject") == subject).height,
               "n_label_conflicts": int(sub_contacts["conflict"].sum() or 0),
               "label_rule": LABEL_RULE}
        write_fragment(store, "subjects", to_table("subjects", [row]), site=site,
                       subject=subject, part="subject", if_changed=True)
    config_sha = hashlib.sha256(config.source.read_bytes()).hexdigest()
    write_fragment(store, "sites", to_table("sites", [{
        "site": site, "description": config.description, "layout": config.layout.kind,
        "mains_hz": config.mains_hz, "store_sfreq": config.store_sfreq,
        "n_subjects": len(subjects), "n_recordings": recordings.height,
        "config_sha256": config_sha, "sozstore_version": sozstore.__version__}]),
        site=site, subject=None, part="site", if_changed=True)


def _init_worker(parent_pid: int, owner: str) -> None:
    """Worker setup: write under the run's owner token and die with the run's process
    (:func:`~sozstore.store.locks.bind_worker_to_parent`); one BLAS thread."""
    bind_worker_to_parent(parent_pid, owner)
    # One BLAS/torch thread per worker: the pool is the parallelism, and a BLAS pool per
    # worker would put workers x cores threads on the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@fill_doc
def run_site(config: SiteConfig, store: StoreLike, *, workers: int = 1,
             executor: Executor | None = None, progress: bool = True,
             on_result: Callable[[RecordingResult], None] | None = None,
             lock_wait_s: float = LOCK_WAIT_S, deep_check: bool = False) -> RunReport:
    """Run the ETL for one site.

    A recording is up to date when its inputs' fingerprint matches the stored one and its
    stored objects are intact (:func:`stored_damage`); a damaged one is ingested again and
    the report says so in a warning line naming the damaged file. By default the intact
    check is quick (metadata, chunk files' presence, Parquet footers: a truncated or missing
    file), because a deep one re-reads every stored byte on every run: on the phantom
    cohort of tests/conftest.py (16 recordings, 83 MB, warm page cache, loaded 2-core
    machine) a no-op re-run of its three sites took 0.14 s, the quick checks 0.03 s of it
    and deep ones 0.07 s; the deep check grows with the signal bytes (a 1-h, 100-channel
    recording stores about 1 GB) while the rest of a no-op run does not. A flipped byte
    inside a chunk or page is found by ``sozstore verify`` (deep by default) and repaired
    by a run with ``deep_check``.

    Parameters
    ----------
    %(config)s
    %(store)s
        Its root is created if missing.
    %(workers)s
    executor : concurrent.futures.Executor, optional
        Use this executor instead of a local pool (e.g. ``dask.distributed.Client
        .get_executor()``); it must be able to pickle :class:`RecordingSpec`.
    %(progress)s
    on_result : callable, optional
        Called with each :class:`RecordingResult` as it completes.
    lock_wait_s : float
        How long to wait while another run writes this site (its writer lock); after that
        the run stops with one line naming the other run (a site error, exit code 2).
    deep_check : bool
        Check every stored byte of recordings that are otherwise up to date (chunk and page
        checksums), as ``sozstore verify`` does, instead of the quick check.

    Returns
    -------
    RunReport
        One result per recording, and the site's problems.
    """
    store = Store.open(store)
    store.root.mkdir(parents=True, exist_ok=True)
    report = RunReport(site=config.name, store=str(store.root), results=[])
    with run_lease(store.root) as owner:
        removed = clean_temporaries(store.root)
        if removed:
            logger.info("removed %d temporaries of interrupted runs", len(removed))
        try:
            with writer_locks(store.root, [site_lock_name(config.name)], wait_s=lock_wait_s,
                              what=f"ingest site {config.name}"):
                _run_site_locked(config, store, report, owner, workers=workers,
                                 executor=executor, progress=progress, on_result=on_result,
                                 deep_check=deep_check)
        except StoreBusy as err:
            report.site_errors.append(f"FAILED {err}")
    return report


def _run_site_locked(config: SiteConfig, store: Store, report: RunReport, owner: str, *,
                     workers: int, executor: Executor | None, progress: bool,
                     on_result: Callable[[RecordingResult], None] | None,
                     deep_check: bool) -> None:
    """:func:`run_site`'s work, under the site's writer lock: discover, skip what is up to
    date and intact, ingest the rest, write the site tables; results go into ``report``."""
    from sozstore.etl.features.registry import feature_tables

    # the feature tables' schemas, so that a store without features yet has typed (empty)
    # feature views and named queries answer (store/store.py, "How the store knows ...")
    store.declare_feature_tables(feature_tables())
    problems: list[str] = []
    try:
        specs = discover(config, problems=problems)
    except (FileNotFoundError, ValueError, TableError) as err:
        report.site_errors.append(f"FAILED {err}")
        return
    # files skipped by discovery (a subject without a safe store id): exit code 1
    report.site_errors.extend(f"warning {p}" for p in problems)
    if not specs:
        report.site_errors.append(f"FAILED {config.source}: no recordings found under "
                                  f"{config.layout.root}")
        return

    todo: list[tuple[RecordingSpec, str]] = []
    repairs: dict[str, str] = {}
    for spec in specs:
        try:
            fp = inputs_fingerprint(spec, config)
        except OSError as err:
            report.results.append(RecordingResult(spec.recording_id, spec.source_path,
                                                  "failed", [f"cannot read: {err}"]))
            continue
        damage = stored_damage(store, spec, deep=deep_check)
        if damage:
            repairs[spec.recording_id] = damage[0].line()
        elif is_up_to_date(store, spec, fp):
            report.results.append(RecordingResult(spec.recording_id, spec.source_path,
                                                  "up to date"))
            continue
        todo.append((spec, fp))
    logger.info("%s: %d recordings, %d to ingest (%d damaged)", config.name, len(specs),
                len(todo), len(repairs))

    def record(res: RecordingResult) -> None:
        if res.recording_id in repairs:
            # first: why a recording whose inputs did not change was ingested again
            res.messages.insert(0, f"re-ingested, its stored copy was damaged: "
                                   f"{repairs[res.recording_id]}")
        report.results.append(res)
        if on_result is not None:
            on_result(res)

    if todo and (executor is not None or workers > 1):
        own = executor is None
        pool = executor or ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                               initializer=_init_worker,
                                               initargs=(os.getpid(), owner))
        try:
            futures = {pool.submit(ingest_recording, spec, config, store, fingerprint=fp,
                                   progress=progress, position=i % max(workers, 1)): spec
                       for i, (spec, fp) in enumerate(todo)}
            for fut in as_completed(futures):
                spec = futures[fut]
                try:
                    record(fut.result())
                except Exception as err:  # noqa: BLE001 - a crashed worker is one failure
                    record(RecordingResult(spec.recording_id, spec.source_path, "failed",
                                           [f"worker crashed: {err}"]))
        finally:
            if own:
                pool.shutdown()
    else:
        for spec, fp in todo:
            record(ingest_recording(spec, config, store, fingerprint=fp,
                                    progress=progress))
    report.results.sort(key=lambda r: r.recording_id)
    try:
        write_site_tables(config, store, specs)
    except (TableError, OSError) as err:
        report.site_errors.append(f"FAILED site tables: {err}")
