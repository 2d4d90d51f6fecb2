"""DuckDB over the store: one view per catalog table, feature table and result table,
opened read-only.

The connection is an in-memory database whose views read the store's Parquet files, so
nothing is ever written to the store by a query; :func:`run_query` further accepts only
``SELECT`` statements (``WITH ... SELECT`` included) and binds parameters rather than pasting
them into SQL.

Feature views come from what the store knows of its feature tables
(:meth:`Store.feature_tables <sozstore.store.Store.feature_tables>`: the manifest the feature
engine declares, or the versions on disk), so this module needs nothing from the ETL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import pyarrow as pa

from sozstore.store._docs import fill_doc
from sozstore.store.catalog import SCHEMAS
from sozstore.store.layout import CATALOG_TABLES, RESULT_TABLES
from sozstore.store.store import Store, StoreLike


class QueryError(ValueError):
    """A query was refused or failed; the message says why."""


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_view_sql(name: str, schema: pa.Schema) -> str:
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
        cols.append(f"CAST(NULL AS {t}) AS \"{field.name}\"")
    return f"CREATE VIEW \"{name}\" AS SELECT {', '.join(cols)} WHERE false"


@fill_doc
def connect(store: StoreLike, *, extra_views: Mapping[str, str] | None = None
            ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table of ``store``.

    Parameters
    ----------
    %(store)s
    extra_views : mapping of str to str, optional
        More ``name -> SELECT`` views to define after the store's.
    """
    store = Store.open(store)
    if not store.exists():
        raise QueryError(f"{store.root}: no such store")
    con = duckdb.connect(":memory:")
    for name in CATALOG_TABLES:
        if any(store.table_dir(name).glob("**/*.parquet")):
            glob = _sql_string(store.table_glob(name))
            con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet({glob}, "
                        "union_by_name = true, hive_partitioning = false)")
        else:
            con.execute(_empty_view_sql(name, SCHEMAS[name]))
    _feature_views(con, store)
    for name in RESULT_TABLES:
        if store.result_files(name):
            glob = _sql_string(store.result_glob(name))
            sql = (f"SELECT * FROM read_parquet({glob}, union_by_name = true, "
                   "hive_partitioning = false)")
            if name in SCHEMAS:
                # runs written before a column was added (e.g. metrics.ci_low) read it as
                # NULL, so named queries that use it still run on old stores
                empty = _empty_view_sql(name, SCHEMAS[name]).split(" AS ", 1)[1]
                sql = f"{sql} UNION ALL BY NAME ({empty})"
            con.execute(f"CREATE VIEW \"{name}\" AS {sql}")
        elif name in SCHEMAS:  # a store without runs yet still answers the named queries
            con.execute(_empty_view_sql(name, SCHEMAS[name]))
    for name, sql in (extra_views or {}).items():
        con.execute(f"CREATE VIEW \"{name}\" AS {sql}")
    return con


def _feature_views(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """One view per feature table at its current version (``spikes``), one per stored
    version (``spikes_v1``); an empty typed view when the store has no rows of the current
    version but knows its schema."""
    for table in store.feature_tables().values():
        for version in table.versions:
            glob = _sql_string(store.feature_glob(table.name, version))
            con.execute(f"CREATE VIEW \"{table.name}_v{version}\" AS SELECT * FROM "
                        f"read_parquet({glob}, union_by_name = true, "
                        "hive_partitioning = false)")
        if table.version in table.versions:
            con.execute(f"CREATE VIEW \"{table.name}\" AS SELECT * FROM "
                        f"\"{table.name}_v{table.version}\"")
        elif table.schema is not None:
            con.execute(_empty_view_sql(table.name, table.schema))


def _one_line(err: duckdb.Error) -> str:
    """DuckDB's message on one line: the error and its hint (``Did you mean "recordings"?``,
    ``Candidate bindings: ...``), without the echoed query and caret that may follow."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = [lines[0], *(line for line in lines[1:2] if not line.startswith("LINE "))] \
        if lines else [type(err).__name__]
    return " ".join(kept)


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
def run_named(store: StoreLike, name: str, params: Mapping[str, str] | None = None
              ) -> pa.Table:
    """Run a named query shipped in ``sql/`` with its parameters bound.

    Parameters
    ----------
    %(store)s
    name : str
        The query's name (``sozstore query --list``).
    params : mapping of str to str, optional
        Its parameters, as text (cast to their declared types).
    """
    from sozstore.sql import NamedQueryError, named_queries

    queries = named_queries()
    if name not in queries:
        raise QueryError(f"no named query {name!r}; known: {', '.join(queries)}")
    try:
        bound = queries[name].bind(dict(params or {}))
    except NamedQueryError as err:
        raise QueryError(str(err)) from None
    return run_query(store, queries[name].sql, bound)


@fill_doc
def run_query(store: StoreLike, sql: str, params: Mapping[str, Any] | None = None
              ) -> pa.Table:
    """Run one read-only query against the store and return an Arrow table.

    Parameters
    ----------
    %(store)s
    sql : str
        One ``SELECT`` statement; ``$name`` placeholders are bound from ``params``.
    params : mapping of str to any, optional
        Values of the placeholders.
    """
    check_read_only(sql)
    con = connect(store)
    try:
        rel = con.sql(sql, params=dict(params) if params else None)
        return rel.to_arrow_table()
    except duckdb.Error as err:
        raise QueryError(_one_line(err)) from None
    finally:
        con.close()
