"""Catalog schema evolution: fragments written before a column joined a catalog schema
read together with newer ones (issue 12), through Store.read/scan and the DuckDB views."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sozstore.store import Store
from sozstore.store.catalog import SCHEMAS, read_table, to_table
from sozstore.store.duck import connect

#: channels columns added by issue 12; an "old" fragment is written without them
NEW_COLUMNS = ("bipolar", "cathode", "type_source")


def _recording(store: Store, subject: str, recording_id: str) -> None:
    """A recordings fragment, the commit that makes the recording's channels visible."""
    path = store.fragment("recordings", "s", subject, recording_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table("recordings", [{"recording_id": recording_id, "site": "s",
                                            "subject": subject}]), path)


def _channels(store: Store, subject: str, recording_id: str, *, old: bool) -> None:
    """Two channels of one recording; ``old`` drops the issue-12 columns from the file."""
    rows = [{"recording_id": recording_id, "site": "s", "subject": subject, "channel": name,
             "index": i, "type": "seeg", "electrode": "LAH", "contact": i + 1,
             "bipolar": name == "LAH1-LAH2", "cathode": "LAH2" if "-" in name else None,
             "type_source": "file"}
            for i, name in enumerate(["LAH1-LAH2", "LAH3"])]
    table = to_table("channels", rows)
    if old:
        table = table.drop_columns(list(NEW_COLUMNS))
    path = store.fragment("channels", "s", subject, recording_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    _recording(store, subject, recording_id)


@pytest.fixture
def mixed_store(tmp_path: Path) -> Store:
    """A store with one old-style and one new-style channels fragment."""
    store = Store.open(tmp_path / "store")
    _channels(store, "p1", "old-rec", old=True)
    _channels(store, "p2", "new-rec", old=False)
    return store


def test_old_fragment_lacks_the_new_columns(mixed_store: Store) -> None:
    old = mixed_store.fragment("channels", "s", "p1", "old-rec")
    assert not set(NEW_COLUMNS) & set(pq.read_schema(old).names)


def test_store_reads_old_and_new_fragments_together(mixed_store: Store) -> None:
    frame = mixed_store.read("channels").sort("recording_id", "index")
    assert frame.columns == SCHEMAS["channels"].names
    assert frame.height == 4
    old = frame.filter(recording_id="old-rec")
    new = frame.filter(recording_id="new-rec")
    assert old["bipolar"].null_count() == 2 and old["type_source"].null_count() == 2
    assert new["bipolar"].to_list() == [True, False]
    assert new["cathode"].to_list() == ["LAH2", None]
    assert new["type_source"].to_list() == ["file", "file"]
    # one partition alone, and the lazy scan, agree
    assert mixed_store.read("channels", site="s", subject="p1")["cathode"].null_count() == 2
    assert mixed_store.scan("channels").select("bipolar").collect().height == 4
    assert read_table(mixed_store, "channels").height == 4


def test_store_reads_only_old_fragments_with_the_new_columns(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    _channels(store, "p1", "old-rec", old=True)
    frame = store.read("channels")
    assert frame.columns == SCHEMAS["channels"].names
    assert frame["bipolar"].null_count() == frame.height == 2


@pytest.mark.parametrize("only_old", [False, True])
def test_views_read_old_and_new_fragments_together(tmp_path: Path, only_old: bool) -> None:
    store = Store.open(tmp_path / "store")
    _channels(store, "p1", "old-rec", old=True)
    if not only_old:
        _channels(store, "p2", "new-rec", old=False)
    with connect(store) as con:
        rows = con.execute("SELECT recording_id, channel, bipolar, cathode, type_source "
                           "FROM channels ORDER BY recording_id, \"index\"").fetchall()
    expected = [("old-rec", "LAH1-LAH2", None, None, None), ("old-rec", "LAH3", None, None, None)]
    if not only_old:
        expected = [("new-rec", "LAH1-LAH2", True, "LAH2", "file"),
                    ("new-rec", "LAH3", False, None, "file"), *expected]
    assert rows == expected


def test_schema_grows_only_by_nullable_columns() -> None:
    # an old fragment can only be filled with nulls if every added column allows them
    fields = {f.name: f for f in SCHEMAS["channels"]}
    assert all(fields[c].nullable for c in NEW_COLUMNS)
    assert fields["bipolar"].type == pa.bool_()
