"""The store as one object: every path inside it, the schema of every table, and readers.

Layout
------
.. code-block:: text

    STORE/
      signals/site=<site>/<recording_id>.zarr                 one Zarr v3 group per recording
      catalog/<table>/site=<site>/subject=<subject>/<part>.parquet
      catalog/sites/site=<site>/site.parquet
      features/_tables.json                                   feature tables' current versions
      features/<table>/v<version>/site=<site>/subject=<subject>/part.parquet
      features/_staging/<set>/v<version>/<recording_id>.<key>.<table>.parquet
      results/<table>/run=<run_id>/part.parquet               runs, folds, predictions, metrics
      results/checkpoints/<run_id>/<fold>.safetensors|.json
      results/reports/<run_id>/index.html                     (and reports/generalisation/)
      _leases/<owner>.lease                                   a running run's lease
      _locks/<name>.lock                                      a held writer lock (site=<site>)

Catalog tables are hive-partitioned by site and subject (the natural unit of deletion and of
patient-wise splits). Partition columns are also stored inside the files, so one file read on
its own is complete. Per-recording tables (``recordings``, ``channels``, ``events``) hold one
file per recording, named by its id: one recording's ETL task writes only its own files.

What readers see (docs/commit-protocol.md): a recording exists once its ``recordings`` row
exists (the ETL writes it last), so :meth:`Store.scan` shows a ``channels`` or ``events``
file only beside its recording's ``recordings`` file; feature partitions and site tables
are single files, replaced atomically. Writers take the locks and leases of
:mod:`sozstore.store.locks`.

Everything else in the package receives a :class:`Store`: public entry points accept a
:data:`StoreLike` and call :meth:`Store.open` once, which is where a location becomes a
root (a later S3 URL, issue 13, is one more branch of :func:`_root_of`).

How the store knows its feature tables
--------------------------------------
The feature sets are defined by the ETL (``etl/features/registry.py``), but the store must
not import the ETL: a reader (DuckDB views, the models' datasets, ``sozstore query``, a
DataLoader worker) may run without it. So the feature engine *declares* its tables to the
store, and the store writes them down in ``features/_tables.json`` (table -> current
version and Arrow schema; :meth:`Store.declare_feature_tables`). The manifest lives in the
store rather than in a process-wide registry so that every reader of the store, in any
process, sees the same current versions, and so that a table with no rows yet still has a
typed (empty) view. A store written before the manifest existed still reads: its tables
and versions are found on disk, and the highest version is current.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from sozstore.store.atomic import TMP_MARK, temporary_sibling, write_bytes_atomic
from sozstore.store.catalog import SCHEMAS
from sozstore.store.layout import CATALOG_TABLES, RESULT_TABLES, safe_component
from sozstore.store.locks import writer_locks

FEATURE_MANIFEST = "_tables.json"
_MANIFEST_FORMAT = "sozstore-feature-tables-1"
_STAGING = "_staging"
#: The writer lock of the feature manifest (read-modify-write by any run).
MANIFEST_LOCK = "features-manifest"
#: Catalog tables whose rows belong to one recording and show only once it is committed.
PER_RECORDING = ("channels", "events")


def _root_of(location: str | os.PathLike[str]) -> Path:
    """The root folder of a store location (the one place that parses locations)."""
    text = os.fspath(location)
    if "://" in text:
        raise ValueError(f"{text}: only local store folders are supported (no URLs yet)")
    return Path(text).expanduser().resolve()


@dataclass(frozen=True)
class FeatureTable:
    """What the store knows about one feature table.

    Attributes
    ----------
    name : str
        Table name (``spikes``).
    version : int or None
        The current version (declared, or the highest on disk); None if neither.
    schema : pyarrow.Schema or None
        Arrow schema of the current version when it was declared.
    versions : tuple of int
        Versions with at least one partition file, ascending.
    """

    name: str
    version: int | None
    schema: pa.Schema | None
    versions: tuple[int, ...]


class Store:
    """One store: its paths (signals, catalog, features, results, reports, checkpoints),
    the schemas of its tables and eager/lazy readers (:meth:`read`, :meth:`scan`).

    Create it with :meth:`Store.open`; stores compare equal (and hash) by their root, so a
    Store can key a cache.

    Parameters
    ----------
    root : Path
        The store's root folder, already resolved (see :meth:`open`).
    """

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, location: StoreLike) -> Store:
        """The store at ``location`` (a Store is returned as it is).

        Parameters
        ----------
        location : Store | str | os.PathLike
            A store, or its root folder (``~`` is expanded; the folder need not exist yet).

        Returns
        -------
        Store
        """
        if isinstance(location, Store):
            return location
        return cls(_root_of(location))

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Store) and other.root == self.root

    def __hash__(self) -> int:
        return hash((Store, self.root))

    def exists(self) -> bool:
        """Whether the store's root exists."""
        return self.root.exists()

    # ----------------------------------------------------------------------- top folders
    @property
    def signals_dir(self) -> Path:
        """``signals/``: one Zarr group per recording."""
        return self.root / "signals"

    @property
    def catalog_dir(self) -> Path:
        """``catalog/``: the catalog tables."""
        return self.root / "catalog"

    @property
    def features_dir(self) -> Path:
        """``features/``: the feature tables, their manifest and staging files."""
        return self.root / "features"

    @property
    def results_dir(self) -> Path:
        """``results/``: the result tables, checkpoints and reports of ``sozstore train``."""
        return self.root / "results"

    @property
    def reports_dir(self) -> Path:
        """``results/reports/``: HTML reports."""
        return self.results_dir / "reports"

    @property
    def checkpoints_dir(self) -> Path:
        """``results/checkpoints/``: fitted models per run and fold."""
        return self.results_dir / "checkpoints"

    # ----------------------------------------------------------------------- signals
    def zarr_path(self, site: str, recording_id: str) -> Path:
        """Where a recording's Zarr group lives."""
        return self.signals_dir / f"site={safe_component(site)}" / f"{recording_id}.zarr"

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, POSIX-style (as the catalog stores ``zarr_path``)."""
        return path.relative_to(self.root).as_posix()

    def signal_path(self, zarr_path: str) -> Path:
        """A recording's Zarr group from the ``zarr_path`` column of ``recordings``."""
        return self.root / zarr_path

    # ----------------------------------------------------------------------- catalog
    def table_dir(self, table: str) -> Path:
        """A catalog table's folder."""
        if table not in CATALOG_TABLES:
            raise ValueError(f"unknown catalog table {table!r}; known: {', '.join(CATALOG_TABLES)}")
        return self.catalog_dir / table

    def partition(self, table: str, site: str, subject: str | None = None) -> Path:
        """A catalog table's site (and subject) partition folder."""
        path = self.table_dir(table) / f"site={safe_component(site)}"
        if subject is not None:
            path = path / f"subject={safe_component(subject)}"
        return path

    def fragment(self, table: str, site: str, subject: str | None, name: str) -> Path:
        """One file of a catalog table (``subject`` None: a site-level file, ``sites``)."""
        return self.partition(table, site, subject) / f"{safe_component(name)}.parquet"

    def committed_files(self, table: str, files: list[Path]) -> list[Path]:
        """The files of ``files`` (of catalog table ``table``) that readers may see.

        A ``channels`` or ``events`` file shows only beside its recording's ``recordings``
        file (same partition, same name): the ETL writes that one last, as the recording's
        commit. Other tables' files are shown as they are.
        """
        if table not in PER_RECORDING:
            return files
        table_dir, recordings_dir = self.table_dir(table), self.table_dir("recordings")
        return [f for f in files if (recordings_dir / f.relative_to(table_dir)).exists()]

    def table_glob(self, table: str) -> str:
        """Glob of every file of a catalog table."""
        return str(self.table_dir(table) / "**" / "*.parquet")

    # ----------------------------------------------------------------------- features
    def feature_dir(self, table: str, version: int | None = None) -> Path:
        """A feature table's folder, or that of one of its versions."""
        if not table or table.startswith("_") or safe_component(table) != table:
            raise ValueError(f"bad feature table name {table!r}")
        path = self.features_dir / table
        return path if version is None else path / f"v{int(version)}"

    def feature_partition(self, table: str, version: int, site: str, subject: str) -> Path:
        """A feature table version's site/subject partition folder."""
        return (self.feature_dir(table, version) / f"site={safe_component(site)}"
                / f"subject={safe_component(subject)}")

    def feature_path(self, table: str, version: int, site: str, subject: str) -> Path:
        """The file of one subject's rows of a feature table version."""
        return self.feature_partition(table, version, site, subject) / "part.parquet"

    def feature_glob(self, table: str, version: int) -> str:
        """Glob of every partition file of a feature table version."""
        return str(self.feature_dir(table, version) / "site=*" / "subject=*" / "*.parquet")

    def feature_files(self, table: str, version: int, *, site: str | None = None,
                      subject: str | None = None) -> list[Path]:
        """The partition files of a feature table version (of one site or subject)."""
        site_part = "site=*" if site is None else f"site={safe_component(site)}"
        subject_part = "subject=*" if subject is None else f"subject={safe_component(subject)}"
        folder = self.feature_dir(table, version)
        return sorted(f for f in folder.glob(f"{site_part}/{subject_part}/*.parquet")
                      if TMP_MARK not in f.name)

    def feature_staging_dir(self, producer: str, version: int) -> Path:
        """Staging folder of one producer (a feature set) at one version."""
        return self.features_dir / _STAGING / safe_component(producer) / f"v{int(version)}"

    def feature_staging_path(self, producer: str, version: int, recording_id: str, key: str,
                             table: str) -> Path:
        """A recording's staged rows of one table (``key`` tells runs' inputs apart)."""
        return (self.feature_staging_dir(producer, version)
                / f"{recording_id}.{key}.{table}.parquet")

    def feature_versions(self, table: str) -> list[int]:
        """Versions of a feature table with at least one partition file, ascending."""
        folder = self.feature_dir(table)
        if not folder.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in folder.glob("v*")
                      if p.name[1:].isdigit() and self.feature_files(table, int(p.name[1:])))

    def _manifest_path(self) -> Path:
        return self.features_dir / FEATURE_MANIFEST

    def _read_manifest(self) -> dict[str, dict[str, object]]:
        path = self._manifest_path()
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable feature manifest ({err})") from None
        if doc.get("format") != _MANIFEST_FORMAT:
            raise ValueError(f"{path}: format {doc.get('format')!r}, expected "
                             f"{_MANIFEST_FORMAT!r}")
        return dict(doc["tables"])

    def _write_manifest(self, tables: Mapping[str, Mapping[str, object]]) -> bool:
        blob = json.dumps({"format": _MANIFEST_FORMAT, "tables": dict(sorted(tables.items()))},
                          indent=1, sort_keys=True).encode()
        path = self._manifest_path()
        if path.exists() and path.read_bytes() == blob:
            return False  # a re-run leaves the file (and its modification time) alone
        write_bytes_atomic(blob, path)
        return True

    def declare_feature_tables(self, tables: Mapping[str, tuple[int, pa.Schema]]) -> bool:
        """Record feature tables' current versions and schemas in the store's manifest.

        Called by whatever computes the tables (``sozstore.etl.features``), before it
        writes them; tables not named keep their entries.

        Parameters
        ----------
        tables : mapping of str to (int, pyarrow.Schema)
            Table name -> (current version, Arrow schema).

        Returns
        -------
        bool
            Whether the manifest changed.
        """
        for name in tables:
            self.feature_dir(name)  # checks the name
        wanted = {name: _manifest_entry(int(version), schema)
                  for name, (version, schema) in tables.items()}
        entries = self._read_manifest()
        if all(entries.get(name) == entry for name, entry in wanted.items()):
            return False  # nothing to write, so no lock to take (the common re-run)
        with writer_locks(self.root, [MANIFEST_LOCK], what="update the feature manifest"):
            entries = self._read_manifest()
            entries.update(wanted)
            return self._write_manifest(entries)

    def feature_tables(self) -> dict[str, FeatureTable]:
        """Every feature table of the store: declared ones and those found on disk."""
        declared = self._read_manifest()
        names = set(declared)
        if self.features_dir.is_dir():
            names.update(p.name for p in self.features_dir.iterdir()
                         if p.is_dir() and not p.name.startswith("_") and TMP_MARK not in p.name
                         and safe_component(p.name) == p.name)
        out = {}
        for name in sorted(names):
            versions = tuple(self.feature_versions(name))
            entry = declared.get(name)
            if entry is not None:
                version: int | None = int(entry["version"])  # type: ignore[call-overload]
                schema: pa.Schema | None = _schema_of(entry)
            else:
                version = versions[-1] if versions else None
                schema = None
            if version is None:
                continue
            out[name] = FeatureTable(name, version, schema, versions)
        return out

    def current_feature_version(self, table: str) -> int | None:
        """The current version of a feature table (declared, else the highest on disk)."""
        entry = self._read_manifest().get(table)
        if entry is not None:
            return int(entry["version"])  # type: ignore[call-overload]
        versions = self.feature_versions(table)
        return versions[-1] if versions else None

    def remove_feature_version(self, table: str, version: int) -> Path | None:
        """Delete one version of a feature table; return its folder, None if absent.

        The folder vanishes at once for readers (it is renamed before it is deleted). When
        it was the current version, the highest version left becomes current.
        """
        path = self.feature_dir(table, version)
        if not path.exists():
            return None
        trash = temporary_sibling(path)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        with writer_locks(self.root, [MANIFEST_LOCK], what="update the feature manifest"):
            entries = self._read_manifest()
            entry = entries.get(table)
            left = self.feature_versions(table)
            if entry is not None and int(entry["version"]) == version and left:  # type: ignore[call-overload]
                schema = pq.read_schema(self.feature_files(table, left[-1])[0]).remove_metadata()
                entries[table] = _manifest_entry(left[-1], schema)
                self._write_manifest(entries)
        return path

    # ----------------------------------------------------------------------- results
    def result_dir(self, table: str, run_id: str) -> Path:
        """The folder of one run's rows of a result table (``results/<table>/run=<id>``)."""
        if table not in RESULT_TABLES:
            raise ValueError(f"unknown result table {table!r}; known: {', '.join(RESULT_TABLES)}")
        return self.results_dir / table / f"run={run_id}"

    def result_path(self, table: str, run_id: str) -> Path:
        """The file of one run's rows of a result table."""
        return self.result_dir(table, run_id) / "part.parquet"

    def result_glob(self, table: str) -> str:
        """Glob of every run's file of a result table."""
        return str(self.results_dir / table / "run=*" / "*.parquet")

    def result_files(self, table: str, run_id: str | None = None) -> list[Path]:
        """The files of a result table (of one run)."""
        run = "run=*" if run_id is None else f"run={run_id}"
        folder = self.results_dir / table
        if table not in RESULT_TABLES:
            raise ValueError(f"unknown result table {table!r}; known: {', '.join(RESULT_TABLES)}")
        return sorted(f for f in folder.glob(f"{run}/*.parquet") if TMP_MARK not in f.name)

    def report_dir(self, name: str) -> Path:
        """The folder of a report: a run id, or ``generalisation``."""
        return self.reports_dir / name

    def checkpoint_dir(self, run_id: str) -> Path:
        """The checkpoints of one run, one pair of files per fold."""
        return self.checkpoints_dir / run_id

    def checkpoint_path(self, run_id: str, fold: str) -> Path:
        """One fold's checkpoint without its suffix (``.safetensors`` holds the arrays,
        ``.json`` the rest; ``models/experiment.py`` adds them)."""
        return self.checkpoint_dir(run_id) / fold

    # ----------------------------------------------------------------------- schemas
    def table_kind(self, table: str) -> str:
        """``catalog``, ``feature`` or ``result``; ValueError for a table the store lacks."""
        if table in CATALOG_TABLES:
            return "catalog"
        if table in RESULT_TABLES:
            return "result"
        if table in self.feature_tables():
            return "feature"
        known = [*CATALOG_TABLES, *RESULT_TABLES, *self.feature_tables()]
        raise ValueError(f"{self.root}: no table {table!r}; known: {', '.join(known)}")

    def schema(self, table: str, *, version: int | None = None) -> pa.Schema | None:
        """The Arrow schema of a table (a feature table's at ``version``, else its current
        one); None where the store fixes none (``folds``, ``predictions``, an undeclared
        feature table without files)."""
        kind = self.table_kind(table)
        if kind != "feature":
            return SCHEMAS.get(table)
        entry = self._read_manifest().get(table)
        wanted = self.current_feature_version(table) if version is None else version
        if entry is not None and int(entry["version"]) == wanted:  # type: ignore[call-overload]
            return _schema_of(entry)
        files = self.feature_files(table, wanted) if wanted is not None else []
        return pq.read_schema(files[0]).remove_metadata() if files else None

    # ----------------------------------------------------------------------- readers
    def scan(self, table: str, *, version: int | None = None, run_id: str | None = None,
             site: str | None = None, subject: str | None = None) -> pl.LazyFrame:
        """Lazily scan a catalog, feature or result table.

        Parameters
        ----------
        table : str
            Table name.
        version : int, optional
            A feature table's version (default: the current one).
        run_id : str, optional
            A result table's rows of one run.
        site, subject : str, optional
            Only these partitions (catalog and feature tables; ``subject`` needs ``site``
            for catalog tables).

        Returns
        -------
        polars.LazyFrame
            Empty with the table's schema when the store holds no rows of it.
        """
        kind = self.table_kind(table)
        if kind == "catalog":
            if run_id is not None or version is not None:
                raise ValueError(f"catalog table {table!r} has no versions or runs")
            if subject is not None and site is None:
                raise ValueError(f"catalog table {table!r}: give the site of subject {subject!r}")
            folder = self.table_dir(table) if site is None else self.partition(table, site,
                                                                               subject)
            files = self.committed_files(table, sorted(folder.glob("**/*.parquet")))
            if not files:
                return _empty(SCHEMAS[table])
            return _scan_catalog(files, SCHEMAS[table])
        if kind == "feature":
            if run_id is not None:
                raise ValueError(f"feature table {table!r} has no runs")
            wanted = self.current_feature_version(table) if version is None else version
            assert wanted is not None  # table_kind found it, so it has a version
            files = self.feature_files(table, wanted, site=site, subject=subject)
            if files:
                return pl.scan_parquet([str(f) for f in files], hive_partitioning=False)
            schema = self.schema(table, version=wanted)
            if schema is None:
                raise FileNotFoundError(f"{self.feature_dir(table, wanted)}: no rows of "
                                        f"{table} v{wanted}; run `sozstore features` first")
            return _empty(schema)
        if version is not None or site is not None or subject is not None:
            raise ValueError(f"result table {table!r} is partitioned by run only")
        files = self.result_files(table, run_id)
        known = SCHEMAS.get(table)
        if not files:
            return _empty(known) if known is not None else pl.LazyFrame()
        # runs written before a column was added lack it: read it as null (as the views do)
        frame = pl.concat([pl.scan_parquet(str(f), hive_partitioning=False) for f in files],
                          how="diagonal_relaxed")
        if known is not None:
            have = frame.collect_schema().names()
            empty = pl.from_arrow(known.empty_table())
            assert isinstance(empty, pl.DataFrame)
            frame = frame.with_columns(pl.lit(None, dtype=empty.schema[c]).alias(c)
                                       for c in empty.columns if c not in have)
        return frame

    def read(self, table: str, *, version: int | None = None, run_id: str | None = None,
             site: str | None = None, subject: str | None = None) -> pl.DataFrame:
        """Read a table into memory (see :meth:`scan` for the options).

        A file listed by the scan may be removed before it is read (a recording being
        re-ingested is un-committed first: docs/commit-protocol.md); the table is then
        listed and read once more.
        """
        try:
            return self.scan(table, version=version, run_id=run_id, site=site,
                             subject=subject).collect()
        except (FileNotFoundError, pl.exceptions.ComputeError):
            return self.scan(table, version=version, run_id=run_id, site=site,
                             subject=subject).collect()


#: What public entry points accept as a store: a :class:`Store` or its root folder.
StoreLike = Union[Store, str, "os.PathLike[str]"]


def _manifest_entry(version: int, schema: pa.Schema) -> dict[str, object]:
    """A manifest entry: the version, the columns for people, the exact schema for code."""
    plain = schema.remove_metadata()
    return {
        "version": version,
        "columns": [[f.name, str(f.type)] for f in plain],
        "arrow_schema": base64.b64encode(plain.serialize().to_pybytes()).decode(),
    }


def _schema_of(entry: Mapping[str, object]) -> pa.Schema:
    blob = base64.b64decode(str(entry["arrow_schema"]))
    return pa.ipc.read_schema(pa.py_buffer(blob))


def _empty(schema: pa.Schema) -> pl.LazyFrame:
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.lazy()


def _scan_catalog(files: list[Path], schema: pa.Schema) -> pl.LazyFrame:
    """Scan catalog fragments as ``schema``, whatever columns each file has.

    Fragments written before a column joined the schema (``channels.bipolar``, issue 12)
    lack it and read it as null, as the DuckDB views do; one scan keeps the reader as fast
    as before the schema grew.
    """
    empty = pl.from_arrow(schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return pl.scan_parquet([str(f) for f in files], hive_partitioning=False,
                           schema=empty.schema, missing_columns="insert")
