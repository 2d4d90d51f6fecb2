"""The query surface reads only the store: no other file, extension, setting or environment
variable is reachable from a SELECT, through the CLI, :func:`run_query`, :func:`run_named`
or the connection :func:`connect` returns; queries are bounded in time and memory; every
column type can be written as CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sozstore import cli
from sozstore.sql import named_queries
from sozstore.store import Store
from sozstore.store.duck import (
    QueryError,
    connect,
    memory_limit_bytes,
    run_named,
    run_query,
)
from sozstore.store.export import ExportError, csv_text, export_text, json_text

#: A cross join of 10^10 rows: far beyond any limit used here.
RUNAWAY = "SELECT a.range AS a, b.range AS b FROM range(100000) a, range(100000) b"


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the store with a Parquet file and a text file in it."""
    folder = tmp_path_factory.mktemp("outside")
    pq.write_table(pa.table({"secret": ["other patient"]}), folder / "x.parquet")
    (folder / "notes.txt").write_text("secret,value\nother patient,1\n")
    return folder


def _escapes(store: Path, outside: Path) -> list[str]:
    """SELECTs that try to read something other than the store's views."""
    recordings = Store.open(store).table_dir("recordings")
    zarr_json = next(Store.open(store).signals_dir.glob("*/*.zarr/zarr.json"))
    return [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_csv_auto('{outside}/notes.txt')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM read_json('/etc/passwd')",
        "SELECT * FROM read_ndjson_objects('/etc/passwd')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM glob('/*')",
        f"SELECT * FROM glob('{store}/**')",
        f"SELECT * FROM read_parquet('{outside}/x.parquet')",
        f"SELECT * FROM '{outside}/x.parquet'",
        f"SELECT * FROM parquet_metadata('{outside}/x.parquet')",
        f"SELECT * FROM parquet_schema('{outside}/x.parquet')",
        # a path that starts in an allowed folder and climbs out of it
        f"SELECT * FROM read_parquet('{recordings}/../../../../{outside.name}/x.parquet')",
        f"SELECT * FROM read_text('{recordings}/../../../signals/*/*.zarr/zarr.json')",
        # the store's own raw signals are not a view
        f"SELECT * FROM read_blob('{zarr_json}')",
        "SELECT * FROM read_csv('https://example.org/x.csv')",
        "SELECT getenv('HOME') AS home",
        "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
        "SELECT * FROM duckdb_secrets()",
    ]


_STATEMENTS = [
    "COPY (SELECT * FROM recordings) TO '{tmp}/copy.csv'",
    "COPY recordings FROM '/etc/passwd'",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "EXPORT DATABASE '{tmp}/export'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET memory_limit = '100GB'",
    "SET temp_directory = '{tmp}/spill'",
    "SET python_enable_replacements = true",
    "PRAGMA memory_limit = '100GB'",
    "SET threads = 64",
]


def _one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("index", range(20))
def test_a_select_reads_nothing_but_the_store(phantom_store: tuple[Path, Path],
                                              outside: Path, index: int) -> None:
    store, _ = phantom_store
    sql = _escapes(store, outside)[index]
    with pytest.raises(QueryError) as caught:
        run_query(store, sql)
    message = _one_line(str(caught.value))
    assert message.startswith("refused: ") or "getenv does not exist" in message, message
    # the same through the connection the library hands out
    con = connect(store)
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_escape_is_probed(phantom_store: tuple[Path, Path], outside: Path) -> None:
    """The parametrised test above covers the whole list."""
    assert len(_escapes(phantom_store[0], outside)) == 20


@pytest.mark.parametrize("template", _STATEMENTS)
def test_statements_are_refused_on_every_path(phantom_store: tuple[Path, Path],
                                              tmp_path: Path, template: str) -> None:
    store, _ = phantom_store
    sql = template.format(tmp=tmp_path)
    with pytest.raises(QueryError, match=r"only SELECT|expected one statement"):
        run_query(store, sql)
    con = connect(store)
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql)
        # nothing changed: the views answer and the settings are as connect left them
        assert con.execute("SELECT current_setting('enable_external_access'), "
                           "current_setting('lock_configuration')").fetchone() == (False, True)
    finally:
        con.close()
    assert list(tmp_path.iterdir()) == []


def test_python_variables_are_not_tables(phantom_store: tuple[Path, Path]) -> None:
    """DuckDB's replacement scans would read a Python table that the code running the
    query holds, named in the query (a service passing analysts' SQL to the connection)."""
    store, _ = phantom_store
    secret = pa.table({"secret": ["in the caller's memory"]})
    assert secret.num_rows == 1
    con = connect(store)
    try:
        with pytest.raises(duckdb.CatalogException, match="secret"):
            con.execute("SELECT * FROM secret")
    finally:
        con.close()


def test_allowed_folders_do_not_cover_their_siblings(tmp_path: Path) -> None:
    """``catalog/recordings/`` is allowed, ``catalog/recordings_old/`` is not."""
    store = Store.open(tmp_path / "store")
    rows = pa.table({"recording_id": ["r1"]})
    store.fragment("recordings", "s", "p", "r1").parent.mkdir(parents=True)
    pq.write_table(rows, store.fragment("recordings", "s", "p", "r1"))
    old = store.catalog_dir / "recordings_old"
    old.mkdir()
    pq.write_table(rows, old / "r1.parquet")
    assert run_query(store, "SELECT recording_id FROM recordings").to_pylist() == [
        {"recording_id": "r1"}]
    inside = store.fragment("recordings", "s", "p", "r1")
    assert run_query(store, f"SELECT count(*) AS n FROM '{inside}'").to_pylist() == [{"n": 1}]
    with pytest.raises(QueryError, match=r"^refused: .*recordings_old"):
        run_query(store, f"SELECT * FROM read_parquet('{old}/r1.parquet')")


def test_every_view_and_named_query_still_answers(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    con = connect(store)
    try:
        views = [r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
        counts = {v: con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0] for v in views}
    finally:
        con.close()
    assert {"recordings", "channels", "bandpower", "spikes", "runs", "metrics"} <= set(views)
    assert counts["recordings"] > 0 and counts["bandpower"] > 0
    for view in views:  # and through run_query, one fresh locked connection each
        n = run_query(store, f'SELECT count(*) AS n FROM "{view}"').column("n")[0].as_py()
        assert n == counts[view], view
    for name in named_queries():
        table = run_named(store, name, {}, timeout_s=60, memory_limit="1GB")
        assert table.num_rows > 0 or name == "run_comparison", name


def test_duckdbs_hint_is_kept(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    with pytest.raises(QueryError, match="Did you mean") as caught:
        run_query(store, "SELECT * FROM recordingz")
    _one_line(str(caught.value))


# --------------------------------------------------------------------------- limits
def test_a_runaway_query_stops_at_the_time_limit(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    with pytest.raises(QueryError) as caught:
        run_query(store, "SELECT count(*) FROM range(1000000) a, range(1000000) b",
                  timeout_s=1)
    assert _one_line(str(caught.value)) == "query stopped after 1 s (the time limit, --timeout)"


def test_a_runaway_join_stops_at_the_memory_limit(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    # sorting needs the whole join in memory: DuckDB's own limit stops it (no spilling)
    with pytest.raises(QueryError, match=r"^out of memory \(limit 64MB, --memory-limit\): "
                                         "Out of Memory Error") as caught:
        run_query(store, f"{RUNAWAY} ORDER BY a DESC, b", memory_limit="64MB", timeout_s=30)
    _one_line(str(caught.value))
    # streamed rows: the result read back outgrows the limit
    with pytest.raises(QueryError, match=r"^out of memory \(limit 64MB, --memory-limit\): "
                                         "the result is larger than the limit"):
        run_query(store, RUNAWAY, memory_limit="64MB", timeout_s=30)
    # a query within the limits answers
    assert run_query(store, "SELECT count(*) AS n FROM recordings", memory_limit="64MB",
                     timeout_s=30).num_rows == 1


def test_limits_are_set_on_the_connection(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    con = connect(store, memory_limit="256MiB")
    try:
        limit, spill = con.execute("SELECT current_setting('memory_limit'), "
                                   "current_setting('temp_directory')").fetchone()
    finally:
        con.close()
    assert limit == "256.0 MiB" and spill == ""


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"memory_limit": "lots"}, "memory limit 'lots' is not a size"),
    ({"memory_limit": "0GB"}, "must be more than zero"),
    ({"timeout_s": 0}, "time limit must be more than 0 s"),
])
def test_bad_limits_are_one_line(phantom_store: tuple[Path, Path], kwargs: dict[str, object],
                                 needle: str) -> None:
    store, _ = phantom_store
    with pytest.raises(QueryError, match=needle):
        run_query(store, "SELECT 1", **kwargs)  # type: ignore[arg-type]


def test_memory_limit_sizes() -> None:
    assert memory_limit_bytes("4GB") == 4 * 10**9
    assert memory_limit_bytes("512 MiB") == 512 * 2**20
    assert memory_limit_bytes("1.5kb") == 1500
    assert memory_limit_bytes("100") == 100


def test_the_cli_refuses_in_one_line(phantom_store: tuple[Path, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = phantom_store
    code = cli.main(["query", "SELECT * FROM read_text('/etc/passwd')", "--store", str(store)])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: refused: ") and "/etc/passwd" in lines[0]
    assert "root:" not in out


# --------------------------------------------------------------------------- formats
def _typed_row() -> pa.Table:
    con = duckdb.connect()
    try:
        return con.sql(r"""
            SELECT [1, 2] AS l, {'a': 1, 'b': [1.5, NULL]} AS s, '\xAA\x01'::BLOB AS b,
                   MAP {'k': 1} AS m, MAP {1: 'x'} AS m_int, INTERVAL 3 DAY AS iv,
                   union_value(num := 2) AS u, 12::HUGEINT AS big, 1.25::DECIMAL(6, 2) AS d,
                   DATE '2024-01-02' AS day, TIMESTAMP '2024-01-02 03:04:05' AS ts,
                   true AS flag, NULL AS nothing, 'a,"b"' AS text
        """).to_arrow_table()
    finally:
        con.close()


def test_every_column_type_writes_as_json() -> None:
    table = _typed_row()
    assert json.loads(json_text(table)) == [{
        "l": [1, 2], "s": {"a": 1, "b": [1.5, None]}, "b": "qgE=", "m": {"k": 1},
        "m_int": [[1, "x"]], "iv": {"months": 0, "days": 3, "nanoseconds": 0}, "u": 2,
        "big": 12, "d": 1.25, "day": "2024-01-02", "ts": "2024-01-02 03:04:05",
        "flag": True, "nothing": None, "text": 'a,"b"'}]
    assert export_text(table, "json") == json_text(table)


def test_every_column_type_writes_as_csv() -> None:
    table = _typed_row()
    header, row = csv_text(table).splitlines()
    assert header == "l,s,b,m,m_int,iv,u,big,d,day,ts,flag,nothing,text"
    assert row == ('"[1,2]","{""a"":1,""b"":[1.5,null]}",qgE=,"{""k"":1}","[[1,""x""]]",'
                   '"{""months"":0,""days"":3,""nanoseconds"":0}",2,12,1.25,2024-01-02,'
                   '2024-01-02 03:04:05,true,,"a,""b"""')
    empty = csv_text(table.slice(0, 0))
    assert empty == header + "\n"


def test_a_column_without_a_text_form_is_named() -> None:
    encoded = pa.RunEndEncodedArray.from_arrays(pa.array([2], pa.int32()), pa.array([7]))
    table = pa.table({"fine": [1, 2], "runs": encoded})
    for fmt in ("csv", "json"):
        with pytest.raises(ExportError, match="cannot write column 'runs' of type run_end"):
            export_text(table, fmt)
    with pytest.raises(ExportError, match="'xml'"):
        export_text(table, "xml")


def test_duplicate_names_cannot_be_json_objects() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(ExportError, match="'a' appear more than once"):
        json_text(table)
    assert csv_text(table) == "a,a\n1,2\n"


def test_columns_polars_cannot_import_become_text() -> None:
    import polars as pl

    from sozstore.store.export import for_polars

    table = _typed_row()
    frame = pl.from_arrow(for_polars(table))
    assert isinstance(frame, pl.DataFrame)
    assert frame["iv"].to_list() == ['{"months":0,"days":3,"nanoseconds":0}']
    assert frame["u"].to_list() == ["2"] and frame["l"].to_list() == [[1, 2]]
    with pytest.raises(Exception, match=r"interval|[Uu]nion"):
        pl.from_arrow(table)


def test_json_of_a_flat_frame_is_unchanged() -> None:
    """Numbers, text and NULLs read as ``emit_table`` wrote them with polars before."""
    import polars as pl

    frame = pl.DataFrame({"run": ["a", None], "auroc": [0.75, float("nan")], "n": [3, None],
                          "ok": [True, False]})
    assert json_text(frame.to_arrow()) == json.dumps(frame.to_dicts(), default=str,
                                                     indent=1) + "\n"
    assert csv_text(frame.to_arrow()).splitlines()[1] == "a,0.75,3,true"
