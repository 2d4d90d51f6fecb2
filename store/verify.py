"""Corruption at rest: find the damaged objects of a store, name them and what depends on them.

A flipped byte or a truncated file must not be read back as wrong microvolts or wrong
aggregates. What is checked, object by object:

* Signals (``signals/site=<site>/<recording_id>.zarr``): the group's and the array's
  metadata parse, and every chunk of the grid is intact. Groups written since checksums were
  added end each chunk with a CRC-32C and write every chunk (``store/signals.py``), so a
  missing chunk file or a checksum that does not match is damage. Older groups have no
  checksum: a ``deep`` check decodes their chunks (which finds a truncated or garbled
  compressed chunk, not a flipped value) and the report lists them as unchecked.
* Parquet files (catalog fragments, feature partitions and staging files, result files): the
  footer parses and, ``deep``, every page is read with its page checksum verified (pyarrow's
  ``page_checksum_verification``). DuckDB and polars ignore page checksums (a flipped byte
  in a page reads as a wrong value through both), so this module's pyarrow read is the
  check. Files written without page checksums are listed as unchecked.
* ``features/_tables.json`` parses.
* Content hashes, where the caller knows them (``expected_sha256``, e.g. from a manifest of
  a commit protocol): a file whose SHA-256 differs, or that is missing, is damage.

Each damaged object comes with what depends on it (a signal -> its subject's feature
partitions and its staging files; a catalog fragment -> the site tables and feature
partitions derived from it) and how to re-create it. Functions are pure where they can be
(:func:`crc32c_matches`, :func:`page_header_has_crc`) and the rest read the store only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import zarr

from sozstore.errors import UserError
from sozstore.store.atomic import TMP_MARK
from sozstore.store.layout import safe_component
from sozstore.store.signals import DATA, has_checksums
from sozstore.store.store import FEATURE_MANIFEST, Store, StoreLike

#: Catalog tables with one file per recording, named by its id (``store/store.py``).
PER_RECORDING_TABLES = ("recordings", "channels", "events")
#: Bytes read from the start of a Parquet page: its header is a few dozen bytes.
_PAGE_HEADER_BYTES = 64
_THRIFT_I32_FIELD_DELTA_1 = 0x15  # compact protocol: field id delta 1, type i32


class DamagedObjectError(UserError):
    """An object of the store is damaged: its bytes are not those that were written.

    The message is one line that starts with the damaged file's path.
    """


@dataclass(frozen=True)
class Damage:
    """One damaged object of a store.

    Attributes
    ----------
    path : str
        The damaged file (or Zarr group), relative to the store's root, POSIX-style.
    kind : str
        ``signal``, ``catalog``, ``feature``, ``feature staging``, ``result`` or
        ``manifest``.
    problem : str
        What is wrong, one line (``stored checksum does not match its bytes``).
    dependants : tuple of str
        Stored objects derived from it (relative paths), which are as suspect as it is.
    site, subject, recording_id : str or None
        The partition the object belongs to, where its path tells.
    repair : str
        How to re-create it.
    """

    path: str
    kind: str
    problem: str
    dependants: tuple[str, ...] = ()
    site: str | None = None
    subject: str | None = None
    recording_id: str | None = None
    repair: str = ""

    def line(self) -> str:
        """The damage as one line: path, kind, problem, dependants and repair."""
        text = f"{self.path}: damaged {self.kind} ({self.problem})"
        if self.dependants:
            text += f"; depends on it: {', '.join(self.dependants)}"
        if self.repair:
            text += f"; repair: {self.repair}"
        return text


@dataclass(frozen=True)
class Unchecked:
    """An object that could be read but carries no checksum to check its bytes against.

    Attributes
    ----------
    path : str
        The object, relative to the store's root.
    kind : str
        As :attr:`Damage.kind`.
    reason : str
        Why it could not be fully checked.
    """

    path: str
    kind: str
    reason: str


@dataclass
class VerifyReport:
    """What :func:`verify_store` found.

    Attributes
    ----------
    store : str
        The store's root.
    deep : bool
        Whether every byte was checked (else metadata, footers and chunk files' presence).
    n_objects : int
        Objects checked: Zarr groups, Parquet files and the feature manifest.
    damaged : list of Damage
        Damaged objects, sorted by path.
    unchecked : list of Unchecked
        Objects without checksums (written before sozstore stored them).
    """

    store: str
    deep: bool
    n_objects: int = 0
    damaged: list[Damage] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when nothing is damaged (unchecked objects included), 1 when something is.

        A store that does not exist is a usage error raised by :func:`verify_store`
        (exit code 2 at the command line).
        """
        return 1 if self.damaged else 0

    def summary(self) -> str:
        """One line: how many objects were checked, damaged and unchecked."""
        depth = "every byte" if self.deep else "metadata and footers only"
        text = (f"{self.store}: {self.n_objects} objects checked ({depth}), "
                f"{len(self.damaged)} damaged")
        if self.unchecked:
            text += (f", {len(self.unchecked)} without checksums (written before sozstore "
                     "stored checksums)")
        return text

    def lines(self) -> list[str]:
        """One line per damaged object, then the summary."""
        return [d.line() for d in self.damaged] + [self.summary()]

    def to_dicts(self) -> list[dict[str, Any]]:
        """The damaged objects as rows (``dependants`` as a list), for ``--format``."""
        return [{**asdict(d), "dependants": list(d.dependants)} for d in self.damaged]

    def to_frame(self) -> pl.DataFrame:
        """The damaged objects as a table with a fixed schema (empty when none)."""
        text = pl.String()
        schema = pl.Schema({"path": text, "kind": text, "problem": text,
                            "dependants": pl.List(text), "site": text, "subject": text,
                            "recording_id": text, "repair": text})
        return pl.DataFrame(self.to_dicts(), schema=schema)


# --------------------------------------------------------------------------- pure checks
def one_line(err: BaseException) -> str:
    """An exception's message as one line (its type when it has none)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def crc32c_matches(blob: bytes) -> bool:
    """Whether ``blob`` ends with the CRC-32C of the rest, little-endian (a chunk written by
    zarr's ``crc32c`` codec).

    Parameters
    ----------
    blob : bytes
        A stored chunk.

    Returns
    -------
    bool
        False also for a blob shorter than the checksum.
    """
    if len(blob) < 4:
        return False
    # a NumPy view: google-crc32c takes it without copying the chunk (as zarr's codec does)
    body = np.frombuffer(blob, dtype=np.uint8)[:-4]
    return int(google_crc32c.value(body)) == int.from_bytes(blob[-4:], "little")


def page_header_has_crc(header: bytes) -> bool:
    """Whether a Parquet page header carries a page checksum.

    The header is Thrift compact: fields 1-3 (page type, uncompressed and compressed size)
    are required i32s written first, each as the field byte ``0x15`` (id delta 1, type i32)
    and a varint; the optional ``crc`` is field 4, the next i32 (``0x15`` again). Any other
    next field (the page type's own header) means no checksum.

    Parameters
    ----------
    header : bytes
        The bytes at a page's offset (at least the header).

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        If ``header`` does not start like a page header.
    """
    pos = 0
    for _ in range(3):
        if pos >= len(header) or header[pos] != _THRIFT_I32_FIELD_DELTA_1:
            raise ValueError("not a Parquet page header")
        pos += 1
        while pos < len(header) and header[pos] & 0x80:
            pos += 1
        pos += 1
    if pos >= len(header):
        raise ValueError("truncated Parquet page header")
    return header[pos] == _THRIFT_I32_FIELD_DELTA_1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- one object
def chunk_problem(array: zarr.Array, array_dir: Path, coords: tuple[int, ...], *,
                  deep: bool = True) -> str | None:
    """What is wrong with one chunk of a signal array, None if nothing (that can be seen).

    Parameters
    ----------
    array : zarr.Array
        The opened array.
    array_dir : Path
        Its folder (``<recording>.zarr/data``).
    coords : tuple of int
        The chunk's grid coordinates.
    deep : bool
        Check the bytes (the checksum; without one, decode the chunk); else only that the
        chunk file is there.

    Returns
    -------
    str or None
        The problem, one line.
    """
    path = array_dir / array.metadata.encode_chunk_key(coords)
    checksummed = has_checksums(array)
    if not path.is_file():
        # arrays with checksums write every chunk; older ones skip all-NaN chunks
        return "missing chunk file" if checksummed else None
    if not deep:
        return "truncated chunk file" if checksummed and path.stat().st_size <= 4 else None
    if checksummed:
        return None if crc32c_matches(path.read_bytes()) else \
            "stored checksum does not match its bytes (CRC-32C)"
    try:
        array.get_block_selection(coords)
    except Exception as err:  # noqa: BLE001 - any failure to decode is the damage
        return f"cannot decode the chunk ({one_line(err)})"
    return None


def _chunk_grid(array: zarr.Array) -> Iterator[tuple[int, ...]]:
    rows, times = array.cdata_shape
    for r in range(rows):
        for t in range(times):
            yield (r, t)


def signal_problems(group_dir: Path, *, deep: bool = True
                    ) -> tuple[list[tuple[Path, str]], bool | None]:
    """The damaged files of one recording's Zarr group.

    Parameters
    ----------
    group_dir : Path
        The group (``<recording_id>.zarr``).
    deep : bool
        See :func:`chunk_problem`.

    Returns
    -------
    problems : list of (Path, str)
        Damaged files (metadata or chunks) and what is wrong with each.
    checksummed : bool or None
        Whether its chunks carry checksums (None when its metadata is unreadable).
    """
    problems: list[tuple[Path, str]] = []
    for meta in (group_dir / "zarr.json", group_dir / DATA / "zarr.json"):
        try:
            json.loads(meta.read_bytes())
        except (OSError, ValueError) as err:
            problems.append((meta, f"unreadable Zarr metadata ({one_line(err)})"))
    if problems:
        return problems, None
    try:
        array = zarr.open_group(group_dir, mode="r", zarr_format=3)[DATA]
    except Exception as err:  # noqa: BLE001 - metadata that parses but does not open
        return [(group_dir / "zarr.json", f"unreadable Zarr metadata ({one_line(err)})")], None
    if not isinstance(array, zarr.Array):
        return [(group_dir / DATA, f"{DATA!r} is not an array")], None
    array_dir = group_dir / DATA
    for coords in _chunk_grid(array):
        problem = chunk_problem(array, array_dir, coords, deep=deep)
        if problem is not None:
            problems.append((array_dir / array.metadata.encode_chunk_key(coords), problem))
    return problems, has_checksums(array)


def _page_checksums(path: Path, metadata: pq.FileMetaData) -> bool | None:
    """Whether the file's first page carries a checksum (pyarrow writes all pages of a file
    alike); None for a file without pages."""
    for rg in range(metadata.num_row_groups):
        group = metadata.row_group(rg)
        for col in range(group.num_columns):
            chunk = group.column(col)
            offset = chunk.dictionary_page_offset if chunk.has_dictionary_page else None
            offset = offset or chunk.data_page_offset
            if offset is None or chunk.total_compressed_size == 0:
                continue
            with open(path, "rb") as fh:
                fh.seek(offset)
                return page_header_has_crc(fh.read(_PAGE_HEADER_BYTES))
    return None


def parquet_problem(path: Path, *, deep: bool = True) -> tuple[str | None, bool | None]:
    """What is wrong with one Parquet file, None if nothing (that can be seen).

    Parameters
    ----------
    path : Path
        The file.
    deep : bool
        Read every page with its checksum verified; else only the footer.

    Returns
    -------
    problem : str or None
        One line.
    checksummed : bool or None
        Whether its pages carry checksums (None: footer unreadable, or no pages).
    """
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as parquet:
            metadata = parquet.metadata
            try:
                checksummed = _page_checksums(path, metadata)
            except ValueError as err:
                return f"damaged page header ({one_line(err)})", None
            if deep:
                for rg in range(metadata.num_row_groups):
                    try:
                        parquet.read_row_group(rg)
                    except Exception as err:  # noqa: BLE001 - any failure to read is the damage
                        return f"damaged row group {rg} ({one_line(err)})", checksummed
    except Exception as err:  # noqa: BLE001 - any failure to open is the damage
        return f"unreadable Parquet footer ({one_line(err)})", None
    return None, checksummed


# --------------------------------------------------------------------------- where and what
@dataclass(frozen=True)
class _Where:
    """What a path of the store is: its kind, table and partition."""

    kind: str
    table: str | None = None
    site: str | None = None
    subject: str | None = None
    recording_id: str | None = None
    run_id: str | None = None


def _value(part: str, key: str) -> str | None:
    prefix = f"{key}="
    return part[len(prefix):] if part.startswith(prefix) else None


def _where(store: Store, path: Path) -> _Where:
    """Classify a file or group of the store by its path (the layout of ``store/store.py``)."""
    parts = path.relative_to(store.root).parts
    top = parts[0] if parts else ""
    if top == "signals" and len(parts) >= 3:
        return _Where("signal", site=_value(parts[1], "site"),
                      recording_id=parts[2].removesuffix(".zarr"))
    if top == "catalog" and len(parts) >= 4:
        table = parts[1]
        subject = _value(parts[3], "subject") if len(parts) >= 5 else None
        rid = Path(parts[-1]).stem if table in PER_RECORDING_TABLES else None
        return _Where("catalog", table, _value(parts[2], "site"), subject, rid)
    if top == "features" and len(parts) >= 2:
        if parts[1] == FEATURE_MANIFEST:
            return _Where("manifest")
        if parts[1] == "_staging":
            # <recording_id>.<key>.<table>.parquet (Store.feature_staging_path)
            pieces = parts[-1].rsplit(".", 3)
            return _Where("feature staging", table=pieces[-2] if len(pieces) == 4 else None,
                          recording_id=pieces[0] if len(pieces) == 4 else None)
        if len(parts) >= 6:
            return _Where("feature", parts[1], _value(parts[3], "site"),
                          _value(parts[4], "subject"))
    if top == "results" and len(parts) >= 3:
        return _Where("result", parts[1], run_id=_value(parts[2], "run"))
    return _Where("other")


def _files(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` matching ``pattern``, temporaries left out, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern)
                  if TMP_MARK not in p.relative_to(folder).as_posix())


def _feature_partitions_of(store: Store, site: str, subject: str) -> list[Path]:
    """Every feature partition file (all tables, all versions) of one subject."""
    return [p for p in _files(store.features_dir, f"*/v*/site={safe_component(site)}/"
                                                  f"subject={safe_component(subject)}/*.parquet")
            if not p.relative_to(store.features_dir).parts[0].startswith("_")]


def _subject_in_attrs(group_dir: Path) -> str | None:
    """The ``subject`` attribute of a recording's Zarr group (``etl/pipeline.py`` writes it),
    None when the group's metadata does not tell."""
    try:
        return str(json.loads((group_dir / "zarr.json").read_bytes())["attributes"]["subject"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _subject_of_recording(store: Store, site: str, recording_id: str) -> str | None:
    """A recording's subject: from its signal's attributes, else its catalog folder."""
    subject = _subject_in_attrs(store.zarr_path(site, recording_id))
    if subject is not None:
        return subject
    for table in PER_RECORDING_TABLES:
        found = _files(store.table_dir(table) / f"site={safe_component(site)}",
                       f"subject=*/{safe_component(recording_id)}.parquet")
        if found:
            return _value(found[0].parent.name, "subject")
    return None


def _dependants(store: Store, where: _Where) -> list[Path]:
    """Stored objects derived from an object (see the module docstring)."""
    out: list[Path] = []
    site, subject, rid = where.site, where.subject, where.recording_id
    if where.kind == "signal" and site and rid:
        subject = subject or _subject_of_recording(store, site, rid)
        if subject:
            out += _feature_partitions_of(store, site, subject)
        out += _files(store.features_dir, f"_staging/*/v*/{rid}.*.parquet")
    elif where.kind == "catalog" and site and subject and where.table in PER_RECORDING_TABLES:
        # write_site_tables derives subjects, contacts and sites from the per-recording
        # fragments; the feature engine fingerprints a subject's partitions by its
        # recordings rows (etl/pipeline.py, etl/features/engine.py)
        derived = {"channels": ("contacts", "subjects"), "recordings": ("subjects",),
                   "events": ()}[where.table or ""]
        for table in derived:
            out += _files(store.partition(table, site, subject), "*.parquet")
        if where.table == "recordings":
            out += _files(store.partition("sites", site), "*.parquet")
            out += _feature_partitions_of(store, site, subject)
    elif where.kind == "result" and where.run_id:
        report = store.report_dir(where.run_id)
        if report.is_dir():
            out.append(report)
    return out


def _repair(where: _Where) -> str:
    """How an object of this kind is re-created."""
    site = f" --site {where.site}" if where.site else ""
    if where.kind == "signal" or (where.kind == "catalog"
                                  and where.table in PER_RECORDING_TABLES):
        return f"re-run `sozstore etl` for site {where.site} (re-ingests {where.recording_id})"
    if where.kind == "catalog":
        return f"re-run `sozstore etl` for site {where.site}"
    if where.kind == "feature":
        return f"re-run `sozstore features{site}`"
    if where.kind == "feature staging":
        return "delete it; `sozstore features` computes it again"
    if where.kind == "result":
        return f"re-run the training run, or remove run {where.run_id}"
    if where.kind == "manifest":
        return "delete it; `sozstore features` (or `sozstore etl`) writes it again"
    return ""


def _damage(store: Store, path: Path, problem: str, where: _Where) -> Damage:
    return Damage(path=store.relative(path), kind=where.kind, problem=problem,
                  dependants=tuple(store.relative(p) for p in _dependants(store, where)),
                  site=where.site, subject=where.subject, recording_id=where.recording_id,
                  repair=_repair(where))


def _parquet_damage(store: Store, path: Path, *, deep: bool,
                    expected_sha256: Mapping[str, str] | None,
                    unchecked: list[Unchecked] | None) -> Damage | None:
    where = _where(store, path)
    rel = store.relative(path)
    expected = (expected_sha256 or {}).get(rel)
    if expected is not None and deep and _sha256(path) != expected:
        return _damage(store, path, "content differs from its recorded SHA-256", where)
    problem, checksummed = parquet_problem(path, deep=deep)
    if problem is not None:
        return _damage(store, path, problem, where)
    if checksummed is False and expected is None and unchecked is not None:
        unchecked.append(Unchecked(rel, where.kind, "no page checksums"))
    return None


def _signal_damage(store: Store, group_dir: Path, *, deep: bool,
                   unchecked: list[Unchecked] | None) -> list[Damage]:
    where = _where(store, group_dir)
    if where.site is not None and where.recording_id is not None:
        where = _Where(where.kind, site=where.site, recording_id=where.recording_id,
                       subject=_subject_of_recording(store, where.site, where.recording_id))
    problems, checksummed = signal_problems(group_dir, deep=deep)
    if checksummed is False and unchecked is not None:
        unchecked.append(Unchecked(store.relative(group_dir), "signal", "no chunk checksums"))
    return [_damage(store, path, problem, where) for path, problem in problems]


# --------------------------------------------------------------------------- entry points
def recording_intact(store: StoreLike, site: str, recording_id: str, *,
                     deep: bool = True) -> list[Damage]:
    """The damaged objects of one recording: its Zarr group and its catalog fragments.

    For the ETL and the feature engine to call before they call a recording "up to date":
    a recording with damage is to be ingested again. Missing objects are not damage here
    (the ETL's own check finds them); a missing chunk file of a checksummed group is.

    Parameters
    ----------
    store : Store | str | os.PathLike
        The store.
    site : str
        The recording's site.
    recording_id : str
        The recording.
    deep : bool
        Check every byte (chunk checksums, page checksums); else metadata, footers and the
        presence of chunk files (no chunk is read).

    Returns
    -------
    list of Damage
        Empty when the recording is intact.
    """
    store = Store.open(store)
    damaged: list[Damage] = []
    group = store.zarr_path(site, recording_id)
    if group.is_dir():
        damaged += _signal_damage(store, group, deep=deep, unchecked=None)
    for table in PER_RECORDING_TABLES:
        for path in _files(store.table_dir(table) / f"site={safe_component(site)}",
                           f"subject=*/{safe_component(recording_id)}.parquet"):
            found = _parquet_damage(store, path, deep=deep, expected_sha256=None,
                                    unchecked=None)
            if found is not None:
                damaged.append(found)
    return damaged


def file_damage(store: StoreLike, path: str | Path, *, deep: bool = True) -> Damage | None:
    """The damage of one Parquet file of the store (a feature partition before the feature
    engine calls it up to date, a catalog fragment), None when it is intact.

    Parameters
    ----------
    store : Store | str | os.PathLike
        The store.
    path : str or Path
        The file (absolute, or relative to the store's root).
    deep : bool
        Read every page (see :func:`parquet_problem`).
    """
    store = Store.open(store)
    full = store.root / path
    return _parquet_damage(store, full, deep=deep, expected_sha256=None, unchecked=None)


def verify_store(store: StoreLike, *, deep: bool = True,
                 expected_sha256: Mapping[str, str] | None = None) -> VerifyReport:
    """Check every object of a store; list the damaged ones with what depends on them.

    Parameters
    ----------
    store : Store | str | os.PathLike
        The store.
    deep : bool
        Check every byte: chunk checksums (or decode chunks without them) and every Parquet
        page; else metadata, Parquet footers and the presence of chunk files.
    expected_sha256 : mapping of str to str, optional
        SHA-256 (hex) of Parquet files by path relative to the root, where something
        recorded them (a commit manifest): a file that differs (compared with ``deep``
        only), or is missing, is damaged.

    Returns
    -------
    VerifyReport
        Damaged and unchecked objects; ``exit_code`` 1 when something is damaged.

    Raises
    ------
    FileNotFoundError
        If the store's root does not exist.
    """
    store = Store.open(store)
    if not store.root.is_dir():
        raise FileNotFoundError(f"{store.root}: no store here")
    report = VerifyReport(store=str(store.root), deep=deep)
    for group in _files(store.signals_dir, "site=*/*.zarr"):
        report.n_objects += 1
        report.damaged += _signal_damage(store, group, deep=deep, unchecked=report.unchecked)
    parquet_files = [
        *_files(store.catalog_dir, "*/**/*.parquet"),
        *(p for p in _files(store.features_dir, "*/v*/site=*/subject=*/*.parquet")
          if not p.relative_to(store.features_dir).parts[0].startswith("_")),
        *_files(store.features_dir, "_staging/*/v*/*.parquet"),
        *_files(store.results_dir, "*/run=*/*.parquet"),
    ]
    for path in parquet_files:
        report.n_objects += 1
        found = _parquet_damage(store, path, deep=deep, expected_sha256=expected_sha256,
                                unchecked=report.unchecked)
        if found is not None:
            report.damaged.append(found)
    manifest = store.features_dir / FEATURE_MANIFEST
    if manifest.exists():
        report.n_objects += 1
        try:
            store.feature_tables()
        except ValueError as err:
            report.damaged.append(_damage(store, manifest, one_line(err).split(": ", 1)[-1],
                                          _where(store, manifest)))
    for rel in sorted(expected_sha256 or {}):
        if not (store.root / rel).exists():
            report.damaged.append(_damage(store, store.root / rel,
                                          "missing (its SHA-256 was recorded)",
                                          _where(store, store.root / rel)))
    report.damaged.sort(key=lambda d: d.path)
    report.unchecked.sort(key=lambda u: u.path)
    return report
