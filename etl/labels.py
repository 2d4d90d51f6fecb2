"""Clinician labels (SOZ, resection), bad flags and coordinates for one recording.

Labels are derived from every channel the file holds, *before* bad channels are flagged or
dropped anywhere (SOZ and resected contacts can be ``status=bad``, as in HUP). Each label
source of the site config yields, per target (``soz``/``resected``), either a value for every
channel of the recording or nothing ("this source says nothing about this recording"); the
first source that says something wins. Within a source that labels a recording, a channel it
does not name is ``False``; a recording no source labels gets ``None`` (null) throughout.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sozstore.etl.channels import (
    ChannelKey,
    canonical_name,
    expand_contacts,
    match_contacts,
    mne_unique_names,
)
from sozstore.etl.config import ChannelConfig, LabelSource, SiteConfig
from sozstore.etl.discover import RecordingSpec
from sozstore.etl.tables import read_rows

_TOKEN_SPLIT = re.compile(r"[,;|/]+")


@dataclass
class RecordingLabels:
    """Per-channel labels of one recording, aligned with its channel keys."""

    soz: list[bool | None]
    resected: list[bool | None]
    source: list[str | None]
    bad: list[bool]
    bad_reason: list[str | None]
    xyz: list[tuple[float | None, float | None, float | None]]
    warnings: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=32)
def _cached_rows(path: str, mtime_ns: int, delimiter: str | None) -> list[dict[str, str | None]]:
    return read_rows(path, delimiter=delimiter)


def cached_rows(path: Path, delimiter: str | None = None) -> list[dict[str, str | None]]:
    """Rows of a site-level table, read once per process (keyed on modification time)."""
    return _cached_rows(str(path), path.stat().st_mtime_ns, delimiter)


def _rows_by_channel(rows: Sequence[dict[str, str | None]], cfg: ChannelConfig
                     ) -> dict[str, dict[str, str | None]]:
    """Rows by raw name, canonical name, and the name MNE gives a repeated label (the
    second ``X`` row is the file's ``X-1``), so duplicates find their own row."""
    named = [(row.get("name"), row) for row in rows]
    names = [name for name, _ in named if name is not None]
    as_read = iter(mne_unique_names(names))
    out: dict[str, dict[str, str | None]] = {}
    for name, row in named:
        if name is not None:
            out.setdefault(next(as_read), row)
            out.setdefault(canonical_name(name, cfg), row)
            out.setdefault(name, row)
    return out


def _lookup(row_index: dict[str, dict[str, str | None]], key: ChannelKey, cfg: ChannelConfig
            ) -> dict[str, str | None] | None:
    return row_index.get(key.raw) or row_index.get(key.channel) or (
        row_index.get(key.channel.upper()) if not cfg.case_sensitive else None)


def external_row(rows: Sequence[dict[str, str | None]], column: str, subject: str
                 ) -> dict[str, str | None] | None:
    """The row of ``subject`` in a per-subject table, tolerant of ``sub-`` prefixes, case,
    trailing spaces and zero padding (``pt01`` in one dataset is ``pt1`` in another)."""

    def norm(text: str) -> str:
        text = text.strip().lower()
        text = text[4:] if text.startswith("sub-") else text
        return re.sub(r"(?<=\D)0+(?=\d)", "", text)

    target = norm(subject)
    for row in rows:
        value = row.get(column)
        if value is not None and norm(value) == target:
            return row
    return None


def derive_labels(spec: RecordingSpec, keys: Sequence[ChannelKey], config: SiteConfig, *,
                  channels_rows: Sequence[dict[str, str | None]] | None,
                  events_rows: Sequence[dict[str, str | None]] | None) -> RecordingLabels:
    """Labels, bad flags and coordinates of one recording (see the module docstring)."""
    cfg = config.channels
    n = len(keys)
    soz: list[bool | None] = [None] * n
    resected: list[bool | None] = [None] * n
    source: list[str | None] = [None] * n
    warnings: list[str] = []
    tsv_index = _rows_by_channel(channels_rows or [], cfg)
    electrode_rows = read_rows(spec.electrodes_tsv) if spec.electrodes_tsv else []
    el_index = _rows_by_channel(electrode_rows, cfg)

    def assign(target: str, values: list[bool | None], name: str) -> None:
        current = soz if target == "soz" else resected
        if any(v is not None for v in current):
            return
        for i, v in enumerate(values):
            current[i] = v
            if v is not None and source[i] is None:
                source[i] = name
            elif v is not None and source[i] is not None and name not in (source[i] or ""):
                source[i] = f"{source[i]}+{name}"

    for src in config.labels:
        for target, values in _from_source(src, spec, keys, config, tsv_index, el_index,
                                           events_rows, warnings).items():
            assign(target, values, src.kind)

    bad = [False] * n
    bad_reason: list[str | None] = [None] * n
    for i, key in enumerate(keys):
        row = _lookup(tsv_index, key, cfg)
        if row is not None and (row.get("status") or "").lower() == "bad":
            bad[i] = True
            why = row.get("status_description")
            bad_reason[i] = "status=bad" + (f" ({why})" if why else "")
        elif row is not None and cfg.bad_column is not None \
                and (row.get(cfg.bad_column) or "").lower() in cfg.bad_values:
            # ds005398 keeps `status` good and flags bad contacts in a 0/1 column (issue 12)
            bad[i] = True
            bad_reason[i] = f"{cfg.bad_column}={row[cfg.bad_column]}"
    if config.layout.bad_column and spec.manifest_row.get(config.layout.bad_column):
        listed = expand_contacts(spec.manifest_row[config.layout.bad_column])
        matched, missing = match_contacts(listed, keys, cfg)
        for i, key in enumerate(keys):
            if key.channel in matched:
                bad[i] = True
                bad_reason[i] = "manifest bad_channels"
        if missing:
            warnings.append(f"manifest bad channels not in file: {', '.join(missing)}")

    xyz: list[tuple[float | None, float | None, float | None]] = []
    for key in keys:
        row = _lookup(el_index, key, cfg) or {}
        xyz.append((_float(row.get("x")), _float(row.get("y")), _float(row.get("z"))))
    return RecordingLabels(soz=soz, resected=resected, source=source, bad=bad,
                           bad_reason=bad_reason, xyz=xyz, warnings=warnings)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _from_source(src: LabelSource, spec: RecordingSpec, keys: Sequence[ChannelKey],
                 config: SiteConfig, tsv_index: dict[str, dict[str, str | None]],
                 el_index: dict[str, dict[str, str | None]],
                 events_rows: Sequence[dict[str, str | None]] | None, warnings: list[str]
                 ) -> dict[str, list[bool | None]]:
    cfg = config.channels
    if src.kind == "status_description":
        if not tsv_index or not any("status_description" in r for r in tsv_index.values()):
            return {}
        soz: list[bool | None] = []
        res: list[bool | None] = []
        for key in keys:
            row = _lookup(tsv_index, key, cfg)
            if row is None:
                soz.append(None)
                res.append(None)
                continue
            text = (row.get("status_description") or "").strip().strip('"').lower()
            tokens = {t.strip().strip('"') for t in _TOKEN_SPLIT.split(text) if t.strip()}
            soz.append(bool(tokens & set(src.soz_tokens)))
            res.append(bool(tokens & set(src.resected_tokens)))
        return {"soz": soz, "resected": res}

    if src.kind == "column":
        index = tsv_index if src.table == "channels" else el_index
        assert src.column is not None
        if not index or not any(src.column in r for r in index.values()):
            return {}
        values: list[bool | None] = []
        for key in keys:
            row = _lookup(index, key, cfg)
            raw = (row.get(src.column) if row else None)
            if row is None:
                values.append(None)
            elif raw is not None and raw.lower() in src.true_values:
                values.append(True)
            elif src.false_values:
                values.append(False if raw is not None and raw.lower() in src.false_values
                               else None)
            else:
                values.append(False)
        return {src.target: values}

    if src.kind in ("external", "manifest"):
        if src.kind == "external":
            assert src.path is not None
            if not src.path.is_file():
                warnings.append(f"label table {src.path} not found")
                return {}
            row = external_row(cached_rows(src.path, src.delimiter), src.subject_column,
                               spec.source_subject)
        else:
            row = spec.manifest_row
        if row is None:
            return {}
        out: dict[str, list[bool | None]] = {}
        for target, column in (("soz", src.soz_column), ("resected", src.resected_column)):
            if column is None or column not in row or not (row.get(column) or "").strip():
                continue  # an empty cell is "no label" (e.g. not operated), not "none"
            try:
                listed = expand_contacts(row.get(column))
            except ValueError as err:
                warnings.append(f"{src.kind} `{column}`: {err}")
                continue
            matched, missing = match_contacts(listed, keys, cfg)
            if missing:
                warnings.append(f"{target} contacts not in file: {', '.join(missing)}")
            out[target] = [key.channel in matched for key in keys]
        return out

    if src.kind == "events":
        assert src.column is not None
        rows = [r for r in (events_rows or []) if src.column in r
                and (src.trial_type is None or r.get("trial_type") == src.trial_type)]
        if not rows:
            return {}
        named: list[str] = []
        for r in rows:
            for item in re.split(r"[,;]", r.get(src.column) or ""):
                item = item.strip()
                if item:
                    named.append(item)
        matched, _missing = match_contacts(named, keys, cfg)
        # Free text leaks into this column in real files ("diffuse", "continuation of
        # seizure"): names that match no channel are ignored, not reported one by one.
        return {src.target: [key.channel in matched for key in keys]}
    return {}
