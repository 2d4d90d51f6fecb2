"""DuckDB over the store: one view per catalog table, feature table and result table,
opened read-only.

The connection is an in-memory database whose views read the store's Parquet files, so
nothing is ever written to the store by a query; :func:`run_query` further accepts only
``SELECT`` statements (``WITH ... SELECT`` included) and binds parameters rather than pasting
them into SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import duckdb
import pyarrow as pa

from sozstore.store.catalog import SCHEMAS
from sozstore.store.layout import CATALOG_TABLES, RESULT_TABLES, StoreLayout


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


def connect(store: str | Path, *, extra_views: Mapping[str, str] | None = None
            ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per catalog table of ``store``.

    Parameters
    ----------
    store : str | Path
        The store root.
    extra_views : mapping of str to str, optional
        More ``name -> SELECT`` views to define after the catalog ones.
    """
    layout = StoreLayout(store)
    if not layout.root.exists():
        raise QueryError(f"{layout.root}: no such store")
    con = duckdb.connect(":memory:")
    for name in CATALOG_TABLES:
        if any(layout.table_dir(name).glob("**/*.parquet")):
            glob = _sql_string(layout.table_glob(name))
            con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet({glob}, "
                        "union_by_name = true, hive_partitioning = false)")
        else:
            con.execute(_empty_view_sql(name, SCHEMAS[name]))
    _feature_views(con, layout)
    for name in RESULT_TABLES:
        files = layout.root / "results" / name
        if any(files.glob("run=*/*.parquet")):
            glob = _sql_string(str(files / "run=*" / "*.parquet"))
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


def _feature_views(con: duckdb.DuckDBPyConnection, layout: StoreLayout) -> None:
    """One view per feature table at its current version (``spikes``), one per stored
    version (``spikes_v1``); an empty typed view when the store has none yet."""
    from sozstore.etl.features.registry import FEATURE_SETS

    root = layout.root / "features"
    for fs in FEATURE_SETS.values():
        for table, schema in fs.tables.items():
            versions = sorted(int(p.name[1:]) for p in (root / table).glob("v*")
                              if p.name[1:].isdigit()) if (root / table).exists() else []
            for version in versions:
                files = root / table / f"v{version}" / "site=*" / "subject=*" / "*.parquet"
                con.execute(f"CREATE VIEW \"{table}_v{version}\" AS SELECT * FROM read_parquet("
                            f"{_sql_string(str(files))}, union_by_name = true, "
                            "hive_partitioning = false)")
            if fs.version in versions:
                con.execute(f"CREATE VIEW \"{table}\" AS SELECT * FROM \"{table}_v{fs.version}\"")
            else:
                con.execute(_empty_view_sql(table, schema))


def check_read_only(sql: str) -> None:
    """Raise :class:`QueryError` unless ``sql`` is a single SELECT statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise QueryError(f"cannot parse query: {err}") from None
    if len(statements) != 1:
        raise QueryError(f"expected one statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed (got {statements[0].type.name})")


def run_named(store: str | Path, name: str, params: Mapping[str, str] | None = None
              ) -> pa.Table:
    """Run a named query shipped in ``sql/`` with its parameters bound."""
    from sozstore.sql import NamedQueryError, named_queries

    queries = named_queries()
    if name not in queries:
        raise QueryError(f"no named query {name!r}; known: {', '.join(queries)}")
    try:
        bound = queries[name].bind(dict(params or {}))
    except NamedQueryError as err:
        raise QueryError(str(err)) from None
    return run_query(store, queries[name].sql, bound)


def run_query(store: str | Path, sql: str, params: Mapping[str, Any] | None = None
              ) -> pa.Table:
    """Run one read-only query against the store and return an Arrow table."""
    check_read_only(sql)
    con = connect(store)
    try:
        rel = con.sql(sql, params=dict(params) if params else None)
        return rel.to_arrow_table()
    except duckdb.Error as err:
        raise QueryError(str(err).splitlines()[0]) from None
    finally:
        con.close()
