"""DuckDB over the store: one view per catalog table, opened read-only.

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
from sozstore.store.layout import CATALOG_TABLES, StoreLayout


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
        elif pa.types.is_list(field.type):
            t = "VARCHAR[]"
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
    for name, sql in (extra_views or {}).items():
        con.execute(f"CREATE VIEW \"{name}\" AS {sql}")
    return con


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
