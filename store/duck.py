"""DuckDB over the store: one view per catalog table, feature table and result table,
opened read-only and locked down.

The connection is an in-memory database whose views read the store's Parquet files, so
nothing is ever written to the store by a query; :func:`run_query` further accepts only
``SELECT`` statements (``WITH ... SELECT`` included) and binds parameters rather than pasting
them into SQL.

Feature views come from what the store knows of its feature tables
(:meth:`Store.feature_tables <sozstore.store.Store.feature_tables>`: the manifest the feature
engine declares, or the versions on disk), so this module needs nothing from the ETL.

What a query can reach
----------------------
``sozstore query`` is a read-only surface a data team may hand to analysts, so a SELECT must
not read anything but the store's tables: DuckDB's table functions (``read_text``,
``read_csv``, ``glob``, ``read_parquet`` of any path) would otherwise read every file the
process can. :func:`connect` therefore, after creating the views:

* turns ``enable_external_access`` off, with ``allowed_directories`` holding only the folders
  the views read (``catalog/<table>/``, ``features/<table>/v<version>/``,
  ``results/<table>/``: not the signals, checkpoints, reports or staging files);
* turns off extension auto-install/auto-load and community extensions (``INSTALL`` and
  ``LOAD`` are refused by the external-access switch as well);
* turns off Python replacement scans, so a query cannot read a Python variable of the
  calling program by naming it;
* sets ``memory_limit`` and disables spilling (``temp_directory`` empty: an in-memory
  database would otherwise spill query intermediates, patient data, to ``.tmp`` in the
  working folder);
* locks the configuration last, so no statement can ``SET`` any of this back.

A damaged file (one DuckDB cannot open, e.g. a truncated catalog fragment) fails only its
own table: the table's view becomes an error view (:func:`_error_view_sql`) whose queries
stop with one line naming the file and ``sozstore verify``, and every other view still
answers. The damaged files are found with :func:`sozstore.store.verify.file_damage` (footers
only: the view's creation read nothing more).

:func:`run_query` adds a time limit (the connection is interrupted from a timer) and reads
the result in batches, so a result larger than the memory limit stops with a clear message
instead of filling the process's memory (DuckDB's limit does not cover the Arrow copy).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa

from sozstore.store._docs import fill_doc
from sozstore.store.catalog import SCHEMAS
from sozstore.store.layout import CATALOG_TABLES, RESULT_TABLES
from sozstore.store.store import PER_RECORDING, Store, StoreLike

#: Time limit of one query (seconds) unless the caller gives another (None: no limit).
DEFAULT_TIMEOUT_S = 300.0
#: Memory limit of one connection unless the caller gives another (None: DuckDB's own
#: default, 80% of the machine's memory).
DEFAULT_MEMORY_LIMIT = "4GB"

#: Rows per Arrow batch while a result is read (the result's size is checked per batch).
_BATCH_ROWS = 65_536
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
#: Settings applied after the views exist and before the configuration is locked (the order
#: matters: ``allowed_directories`` cannot be widened once external access is off).
_LOCKDOWN = (
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("python_enable_replacements", "false"),
    ("temp_directory", "''"),
    ("enable_external_access", "false"),
)


class QueryError(ValueError):
    """A query was refused or failed; the message says why."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def memory_limit_bytes(limit: str) -> int:
    """The number of bytes of a memory limit written as DuckDB takes it (``4GB``, ``512MiB``,
    ``1e9`` is not accepted: a number and an optional unit B, KB, MB, GB, TB, KiB ... TiB).

    Raises
    ------
    QueryError
        When ``limit`` is not such a size, or is zero.
    """
    match = _SIZE.match(limit)
    if match is None:
        raise QueryError(f"memory limit {limit!r} is not a size like 4GB or 512MiB")
    size = int(float(match[1]) * _UNITS[(match[2] or "B").upper()])
    if size <= 0:
        raise QueryError(f"memory limit {limit!r} must be more than zero")
    return size


def _glob_folder(glob: str) -> str:
    """The folder a glob reads below (its parts before the first wildcard), with a trailing
    slash so that ``catalog/channels/`` does not also allow ``catalog/channels_old/``."""
    parts = []
    for part in PurePosixPath(glob).parts:
        if any(c in part for c in "*?[{"):
            break
        parts.append(part)
    return str(PurePosixPath(*parts)).rstrip("/") + "/"


def _empty_view_sql(name: str, schema: pa.Schema) -> str:
    cols = [f"CAST(NULL AS {t}) AS \"{col}\"" for col, t in _column_types(schema)]
    return f"CREATE VIEW \"{name}\" AS SELECT {', '.join(cols)} WHERE false"


def _column_types(schema: pa.Schema) -> list[tuple[str, str]]:
    """``(name, DuckDB type)`` of each column of ``schema``, as the empty views type them."""
    cols = []
    for field in schema:
        if pa.types.is_string(field.type):
            t = "VARCHAR"
        elif pa.types.is_floating(field.type):
            t = "DOUBLE"
        elif pa.types.is_integer(field.type):
            t = "BIGINT"
        elif pa.types.is_boolean(field.type):
            t = "BOOLEAN"
        elif pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type):
            inner = field.type.value_type
            t = "FLOAT[]" if pa.types.is_floating(inner) else "VARCHAR[]"
        else:
            t = "VARCHAR"
        cols.append((field.name, t))
    return cols


def _error_view_sql(name: str, message: str, schema: pa.Schema | None) -> str:
    """A view that fails every query reading it with ``message`` (DuckDB's ``error``).

    The view keeps the table's columns (``schema``; one ``error`` column when unknown), so
    views and named queries that name them still bind. Every column and the filter call
    ``error``: DuckDB drops unused columns (``count(*)`` would read none of them) but
    cannot fold a filter away that calls a function with side effects.
    """
    fail = f"error({_sql_string(message)})"
    cols = _column_types(schema) if schema is not None and len(schema) else [
        ("error", "VARCHAR")]
    listed = ", ".join(f"CAST({fail} AS {t}) AS \"{col}\"" for col, t in cols)
    return f"CREATE VIEW \"{name}\" AS SELECT {listed} FROM range(1) WHERE {fail} IS NULL"


def _create_view(con: duckdb.DuckDBPyConnection, store: Store, name: str, sql: str,
                 files: list[Path], schema: pa.Schema | None) -> bool:
    """``CREATE VIEW name AS sql``; when DuckDB cannot read the files behind it, an error
    view naming the first damaged one of ``files`` instead.

    Returns
    -------
    bool
        Whether the view reads the files (False: the error view, which reads nothing).

    Raises
    ------
    duckdb.Error
        When the view fails and none of ``files`` is damaged (another problem).
    """
    try:
        con.execute(f"CREATE VIEW \"{name}\" AS {sql}")
    except duckdb.Error:
        from sozstore.store.verify import file_damage  # zarr's import only when needed

        damaged = [d for d in (file_damage(store, f, deep=False) for f in files)
                   if d is not None]
        if not damaged:
            raise
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        message = (f"{store.root / damaged[0].path}: damaged {name} file "
                   f"({damaged[0].problem}){more}; run `sozstore verify`")
        con.execute(_error_view_sql(name, " ".join(message.split()), schema))
        return False
    return True


def _read_parquet(glob: str) -> str:
    return (f"SELECT * FROM read_parquet({_sql_string(glob)}, union_by_name = true, "
            "hive_partitioning = false)")


@fill_doc
def connect(store: StoreLike, *, extra_views: Mapping[str, str] | None = None,
            memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table of ``store``, locked down so that
    it reads nothing but those tables (see the module's docstring).

    Parameters
    ----------
    %(store)s
    extra_views : mapping of str to str, optional
        More ``name -> SELECT`` views to define after the store's (before the lock, so they
        may read only what the store's views read).
    memory_limit : str or None
        DuckDB's memory limit for the connection (``4GB``, ``512MiB``); None keeps DuckDB's
        default (80% of the machine's memory). Nothing spills to disk either way.

    Returns
    -------
    duckdb.DuckDBPyConnection
        The connection; external access is off and its settings are locked.

    Raises
    ------
    QueryError
        When the store does not exist or ``memory_limit`` is not a size.
    """
    store = Store.open(store)
    if not store.exists():
        raise QueryError(f"{store.root}: no such store")
    if memory_limit is not None:
        memory_limit_bytes(memory_limit)  # one clear line for a bad size, before DuckDB's
    con = duckdb.connect(":memory:")
    try:
        folders = _create_views(con, store)
        for name, sql in (extra_views or {}).items():
            con.execute(f"CREATE VIEW \"{name}\" AS {sql}")
        _lock_down(con, folders, memory_limit)
    except BaseException:
        con.close()
        raise
    return con


def _create_views(con: duckdb.DuckDBPyConnection, store: Store) -> list[str]:
    """Create the store's views; the folders they read, for ``allowed_directories``."""
    folders: list[str] = []
    for name in CATALOG_TABLES:
        files = sorted(store.table_dir(name).glob("**/*.parquet"))
        if files:
            glob = store.table_glob(name)
            sql = _read_parquet(glob)
            if name in PER_RECORDING:
                # a recording's rows show once its `recordings` row exists (the ETL writes
                # it last: docs/commit-protocol.md); `recordings` is created before these
                sql += " WHERE recording_id IN (SELECT recording_id FROM recordings)"
            # fragments written before a column joined the schema (channels.bipolar,
            # issue 12) read it as NULL, even when no fragment has it yet
            empty = _empty_view_sql(name, SCHEMAS[name]).split(" AS ", 1)[1]
            sql = f"{sql} UNION ALL BY NAME ({empty})"
            if _create_view(con, store, name, sql, files, SCHEMAS[name]):
                folders.append(_glob_folder(glob))
        else:
            con.execute(_empty_view_sql(name, SCHEMAS[name]))
    folders += _feature_views(con, store)
    for name in RESULT_TABLES:
        files = store.result_files(name)
        if files:
            glob = store.result_glob(name)
            sql = _read_parquet(glob)
            if name in SCHEMAS:
                # runs written before a column was added (e.g. metrics.ci_low) read it as
                # NULL, so named queries that use it still run on old stores
                empty = _empty_view_sql(name, SCHEMAS[name]).split(" AS ", 1)[1]
                sql = f"{sql} UNION ALL BY NAME ({empty})"
            if _create_view(con, store, name, sql, files, SCHEMAS.get(name)):
                folders.append(_glob_folder(glob))
        elif name in SCHEMAS:  # a store without runs yet still answers the named queries
            con.execute(_empty_view_sql(name, SCHEMAS[name]))
    return folders


def _feature_views(con: duckdb.DuckDBPyConnection, store: Store) -> list[str]:
    """One view per feature table at its current version (``spikes``), one per stored
    version (``spikes_v1``); an empty typed view when the store has no rows of the current
    version but knows its schema. Returns the folders the views read."""
    folders = []
    for table in store.feature_tables().values():
        for version in table.versions:
            glob = store.feature_glob(table.name, version)
            schema = table.schema if version == table.version else None
            if _create_view(con, store, f"{table.name}_v{version}", _read_parquet(glob),
                            store.feature_files(table.name, version), schema):
                folders.append(_glob_folder(glob))
        if table.version in table.versions:
            con.execute(f"CREATE VIEW \"{table.name}\" AS SELECT * FROM "
                        f"\"{table.name}_v{table.version}\"")
        elif table.schema is not None:
            con.execute(_empty_view_sql(table.name, table.schema))
    return folders


def _lock_down(con: duckdb.DuckDBPyConnection, folders: Iterable[str],
               memory_limit: str | None) -> None:
    """Allow only ``folders``, turn off external access and extensions, lock the settings."""
    listed = ", ".join(_sql_string(f) for f in sorted(set(folders)))
    con.execute(f"SET allowed_directories = [{listed}]")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {_sql_string(memory_limit)}")
    for name, value in _LOCKDOWN:
        con.execute(f"SET {name} = {value}")
    con.execute("SET lock_configuration = true")  # last: nothing above can be SET back


def _one_line(err: BaseException) -> str:
    """DuckDB's message on one line: the error and its hint (``Did you mean "recordings"?``,
    ``Candidate bindings: ...``), without the echoed query and caret that may follow."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = [lines[0], *(line for line in lines[1:2] if not line.startswith("LINE "))] \
        if lines else [type(err).__name__]
    return " ".join(kept)


def _explained(err: BaseException, memory_limit: str | None) -> str:
    """The one-line message of a failed query, saying which protection stopped it."""
    line = _one_line(err)
    if isinstance(err, duckdb.PermissionException) or line.startswith("Permission Error"):
        return ("refused: a query reads only the store's own tables and views, no other "
                f"file, extension or setting ({line})")
    if "configuration has been locked" in line:
        return f"refused: the query surface's settings are locked ({line})"
    if isinstance(err, duckdb.OutOfMemoryException) or line.startswith("Out of Memory"):
        limit = memory_limit or "DuckDB's default"
        return f"out of memory (limit {limit}, --memory-limit): {line}"
    return line


def check_read_only(sql: str) -> None:
    """Raise :class:`QueryError` unless ``sql`` is a single SELECT statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise QueryError(f"cannot parse query: {_one_line(err)}") from None
    if len(statements) != 1:
        raise QueryError(f"expected one statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed (got {statements[0].type.name})")


@fill_doc
def run_named(store: StoreLike, name: str, params: Mapping[str, str] | None = None, *,
              timeout_s: float | None = DEFAULT_TIMEOUT_S,
              memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> pa.Table:
    """Run a named query shipped in ``sql/`` with its parameters bound.

    Parameters
    ----------
    %(store)s
    name : str
        The query's name (``sozstore query --list``).
    params : mapping of str to str, optional
        Its parameters, as text (cast to their declared types).
    timeout_s : float or None
        Stop the query after this many seconds (None: no limit).
    memory_limit : str or None
        DuckDB's memory limit (``4GB``), also the largest result read back; None: DuckDB's
        default.

    Returns
    -------
    pyarrow.Table
        The query's rows.

    Raises
    ------
    QueryError
        For an unknown query or parameter, or when the query fails or is stopped.
    """
    from sozstore.sql import NamedQueryError, named_queries

    queries = named_queries()
    if name not in queries:
        raise QueryError(f"no named query {name!r}; known: {', '.join(queries)}")
    try:
        bound = queries[name].bind(dict(params or {}))
    except NamedQueryError as err:
        raise QueryError(str(err)) from None
    return run_query(store, queries[name].sql, bound, timeout_s=timeout_s,
                     memory_limit=memory_limit)


@fill_doc
def run_query(store: StoreLike, sql: str, params: Mapping[str, Any] | None = None, *,
              timeout_s: float | None = DEFAULT_TIMEOUT_S,
              memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> pa.Table:
    """Run one read-only query against the store and return an Arrow table.

    Parameters
    ----------
    %(store)s
    sql : str
        One ``SELECT`` statement; ``$name`` placeholders are bound from ``params``.
    params : mapping of str to any, optional
        Values of the placeholders.
    timeout_s : float or None
        Stop the query after this many seconds (None: no limit).
    memory_limit : str or None
        DuckDB's memory limit (``4GB``), also the largest result read back; None: DuckDB's
        default.

    Returns
    -------
    pyarrow.Table
        The query's rows.

    Raises
    ------
    QueryError
        When the query is not one SELECT, reads anything but the store's views, fails, runs
        past ``timeout_s`` or needs more than ``memory_limit``.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise QueryError(f"the time limit must be more than 0 s, got {timeout_s}")
    check_read_only(sql)
    con = connect(store, memory_limit=memory_limit)
    try:
        return _fetch_bounded(con, sql, params, timeout_s=timeout_s,
                              memory_limit=memory_limit)
    finally:
        con.close()


def _fetch_bounded(con: duckdb.DuckDBPyConnection, sql: str,
                   params: Mapping[str, Any] | None, *, timeout_s: float | None,
                   memory_limit: str | None) -> pa.Table:
    """Run ``sql`` on ``con``, interrupted after ``timeout_s``, its result read in batches
    and refused once it outgrows ``memory_limit`` (DuckDB's limit does not cover the Arrow
    copy the result is read into)."""
    max_bytes = memory_limit_bytes(memory_limit) if memory_limit is not None else None
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, stop) if timeout_s is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        rel = con.sql(sql, params=dict(params) if params else None)
        reader = rel.to_arrow_reader(_BATCH_ROWS)
        batches: list[pa.RecordBatch] = []
        size = 0
        for batch in reader:
            if stopped.is_set():  # an interrupt that came between two batches
                raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
            size += batch.nbytes
            if max_bytes is not None and size > max_bytes:
                raise QueryError(f"out of memory (limit {memory_limit}, --memory-limit): the "
                                 "result is larger than the limit; add a LIMIT or aggregate")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except (duckdb.Error, pa.ArrowException, OSError) as err:
        # errors met while the batches stream arrive as Arrow's OSError, not duckdb.Error
        if stopped.is_set():
            raise QueryError(f"query stopped after {timeout_s:g} s (the time limit, "
                             "--timeout)") from None
        raise QueryError(_explained(err, memory_limit)) from None
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
