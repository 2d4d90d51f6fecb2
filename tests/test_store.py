"""The Store object: one spelling of every path, the feature manifest, scan/read."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sozstore.store import Store
from sozstore.store._docs import fill_doc
from sozstore.store.catalog import SCHEMAS, read_table
from sozstore.store.duck import connect

SPIKES = pa.schema([("site", pa.string()), ("subject", pa.string()),
                    ("spike_count", pa.int32())])


def _write(path: Path, rows: dict[str, list], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows, schema=schema), path)


def test_open_is_idempotent_and_keys_by_root(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    assert Store.open(store) is store
    assert Store.open(str(tmp_path / "s" / ".." / "s")) == store
    assert hash(Store.open(tmp_path / "s")) == hash(store)
    assert pickle.loads(pickle.dumps(store)) == store
    assert store.root == (tmp_path / "s").resolve()
    with pytest.raises(ValueError, match="no URLs yet"):
        Store.open("s3://bucket/store")


def test_paths_keep_the_on_disk_layout(tmp_path: Path) -> None:
    """The spellings that etl/features/engine.py, models/experiment.py, models/report.py and
    src/sozstore/cli.py wrote before the Store owned them."""
    s = Store.open(tmp_path)
    root = tmp_path.resolve()
    assert s.zarr_path("hup site", "r1") == root / "signals" / "site=hup-site" / "r1.zarr"
    assert s.fragment("channels", "a", "b", "r1") == (
        root / "catalog" / "channels" / "site=a" / "subject=b" / "r1.parquet")
    assert s.fragment("sites", "a", None, "site") == root / "catalog/sites/site=a/site.parquet"
    assert s.feature_path("spikes", 2, "a", "b/c") == (
        root / "features" / "spikes" / "v2" / "site=a" / "subject=b-c" / "part.parquet")
    assert s.feature_staging_path("spikes", 2, "r1", "0123", "spike_events") == (
        root / "features" / "_staging" / "spikes" / "v2" / "r1.0123.spike_events.parquet")
    assert s.result_path("metrics", "abc") == root / "results/metrics/run=abc/part.parquet"
    assert s.checkpoint_path("abc", "fold0") == root / "results/checkpoints/abc/fold0"
    assert s.report_dir("abc") == root / "results" / "reports" / "abc"
    assert s.report_dir("generalisation") == s.reports_dir / "generalisation"
    assert s.signal_path(s.relative(s.zarr_path("a", "r1"))) == s.zarr_path("a", "r1")
    with pytest.raises(ValueError, match="unknown catalog table"):
        s.table_dir("nope")
    with pytest.raises(ValueError, match="unknown result table"):
        s.result_dir("nope", "abc")
    with pytest.raises(ValueError, match="bad feature table"):
        s.feature_dir("_staging")


def test_catalog_scan_is_typed_when_empty(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    empty = s.read("recordings")
    assert empty.is_empty() and empty.columns == SCHEMAS["recordings"].names
    _write(s.fragment("subjects", "a", "b", "subject"),
           {"site": ["a"], "subject": ["b"]})
    _write(s.fragment("subjects", "x", "y", "subject"),
           {"site": ["x"], "subject": ["y"]})
    assert sorted(s.read("subjects")["site"]) == ["a", "x"]
    assert s.read("subjects", site="x")["subject"].to_list() == ["y"]
    assert read_table(tmp_path, "subjects").height == 2
    with pytest.raises(ValueError, match="give the site"):
        s.scan("subjects", subject="y")


def test_feature_manifest_versions_and_removal(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    assert s.feature_tables() == {}
    assert s.declare_feature_tables({"spikes": (1, SPIKES)})
    assert not s.declare_feature_tables({"spikes": (1, SPIKES)})  # unchanged: not rewritten
    manifest = json.loads((tmp_path / "features" / "_tables.json").read_text())
    assert manifest["tables"]["spikes"]["version"] == 1
    # declared, no rows yet: a typed empty table and an empty typed view
    assert s.read("spikes").columns == SPIKES.names
    assert connect(s).execute("SELECT count(*) FROM spikes").fetchone() == (0,)

    _write(s.feature_path("spikes", 1, "a", "b"),
           {"site": ["a"], "subject": ["b"], "spike_count": [3]}, SPIKES)
    s.declare_feature_tables({"spikes": (2, SPIKES)})
    _write(s.feature_path("spikes", 2, "a", "b"),
           {"site": ["a", "a"], "subject": ["b", "b"], "spike_count": [1, 2]}, SPIKES)
    assert s.feature_versions("spikes") == [1, 2]
    assert s.current_feature_version("spikes") == 2
    assert s.read("spikes").height == 2 and s.read("spikes", version=1).height == 1
    con = connect(s)
    assert con.execute("SELECT count(*) FROM spikes").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM spikes_v1").fetchone() == (1,)
    # removing the current version makes the highest one left current
    assert s.remove_feature_version("spikes", 2) == s.feature_dir("spikes", 2)
    assert s.remove_feature_version("spikes", 2) is None
    assert s.current_feature_version("spikes") == 1
    assert s.read("spikes")["spike_count"].to_list() == [3]


def test_undeclared_feature_tables_are_found_on_disk(tmp_path: Path) -> None:
    """A store written before the manifest: the highest version on disk is current."""
    s = Store.open(tmp_path)
    for version in (1, 3):
        _write(s.feature_path("hfo", version, "a", "b"), {"site": ["a"] * version})
    (s.feature_dir("hfo") / "v7").mkdir()  # a version folder without files is no version
    tables = s.feature_tables()
    assert list(tables) == ["hfo"] and tables["hfo"].versions == (1, 3)
    assert tables["hfo"].version == 3 and tables["hfo"].schema is None
    assert s.read("hfo").height == 3
    assert s.table_kind("hfo") == "feature"
    with pytest.raises(ValueError, match="no table 'wpt'"):
        s.scan("wpt")


def test_result_scan_fills_columns_of_older_runs(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    assert s.read("metrics").columns == SCHEMAS["metrics"].names
    _write(s.result_path("metrics", "old"), {"run_id": ["old"], "value": [0.5]})
    _write(s.result_path("metrics", "new"), {"run_id": ["new"], "value": [0.7],
                                             "ci_low": [0.6]})
    both = s.read("metrics").sort("run_id")
    assert both["ci_low"].to_list() == [0.6, None]
    assert set(SCHEMAS["metrics"].names) <= set(both.columns)
    assert s.read("metrics", run_id="old")["value"].to_list() == [0.5]
    assert s.read("folds").is_empty()  # no schema fixed, no runs: an empty frame
    assert isinstance(s.scan("folds"), pl.LazyFrame)


def test_fill_doc_indents_the_shared_entry() -> None:
    @fill_doc
    def f() -> None:
        """Do.

        Parameters
        ----------
        %(store)s
        """

    assert f.__doc__ is not None
    lines = f.__doc__.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("store :"))
    assert lines[i].startswith("        store : Store")
    assert lines[i + 1].startswith("            The store")

    def g() -> None:
        """%(nope)s"""

    with pytest.raises(KeyError, match="nope"):
        fill_doc(g)
