"""The catalog: Parquet tables describing sites, subjects, recordings, channels and events.

Every table has a fixed Arrow schema (below), so fragments written by different ETL tasks
union cleanly. Shared keys: ``recording_id`` (recordings, channels, events), ``site`` and
``subject`` (every table), ``channel`` (the canonical name). ``soz``, ``resected`` and
``bad`` are booleans, null where the site gives no label.

Readers come in eager/lazy pairs, after polars: :func:`read_table` returns a
``polars.DataFrame``, :func:`scan_table` a ``polars.LazyFrame`` (both are
:meth:`Store.read <sozstore.store.Store.read>` and :meth:`Store.scan
<sozstore.store.Store.scan>` for a store given by its root).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from sozstore.store._docs import fill_doc
from sozstore.store.atomic import write_parquet_atomic
from sozstore.store.layout import CATALOG_TABLES

if TYPE_CHECKING:
    from sozstore.store.store import Store, StoreLike

_str = pa.string()
_f64 = pa.float64()
_bool = pa.bool_()
_i64 = pa.int64()

SCHEMAS: dict[str, pa.Schema] = {
    "sites": pa.schema([
        ("site", _str), ("description", _str), ("layout", _str), ("mains_hz", _f64),
        ("store_sfreq", _f64), ("n_subjects", _i64), ("n_recordings", _i64),
        ("config_sha256", _str), ("sozstore_version", _str),
    ]),
    "subjects": pa.schema([
        ("site", _str), ("subject", _str), ("outcome_raw", _str), ("seizure_free", _bool),
        ("engel_class", _i64), ("engel_subclass", _str), ("ilae_class", _i64),
        ("n_recordings", _i64), ("n_label_conflicts", _i64), ("label_rule", _str),
    ]),
    "recordings": pa.schema([
        ("recording_id", _str), ("site", _str), ("subject", _str), ("session", _str),
        ("task", _str), ("acquisition", _str), ("run", _str), ("source_path", _str),
        ("source_format", _str), ("source_sha256", _str), ("source_sfreq", _f64),
        ("sfreq", _f64), ("n_samples", _i64), ("duration_s", _f64), ("n_channels", _i64),
        ("n_bad", _i64), ("bandwidth_hz", _f64), ("mains_hz", _f64), ("zarr_path", _str),
        ("inputs_fingerprint", _str), ("sozstore_version", _str),
        ("warnings", pa.list_(_str)),
    ]),
    "channels": pa.schema([
        ("recording_id", _str), ("site", _str), ("subject", _str), ("channel", _str),
        ("raw_name", _str), ("index", _i64), ("type", _str), ("electrode", _str),
        ("contact", _i64), ("bad", _bool), ("bad_reason", _str), ("soz", _bool),
        ("resected", _bool), ("label_source", _str), ("x", _f64), ("y", _f64), ("z", _f64),
        # added with issue 12; fragments written before read them as null (Store.scan and
        # the views fill them). bipolar: a pair of contacts (LAH1-LAH2), electrode/contact
        # the anode's, cathode the second contact's canonical name. type_source: where the
        # type came from (file, tsv, prefix, name, default, or rule:<site rule>)
        ("bipolar", _bool), ("cathode", _str), ("type_source", _str),
    ]),
    "events": pa.schema([
        ("recording_id", _str), ("site", _str), ("subject", _str), ("onset_s", _f64),
        ("duration_s", _f64), ("kind", _str), ("raw_text", _str), ("rule", _str),
        ("in_recording", _bool),
    ]),
    "contacts": pa.schema([
        ("site", _str), ("subject", _str), ("channel", _str), ("electrode", _str),
        ("contact", _i64), ("soz", _bool), ("resected", _bool), ("n_recordings", _i64),
        ("n_soz", _i64), ("n_resected", _i64), ("conflict", _bool),
    ]),
}


#: The results tables that ``sozstore train`` writes under ``results/`` (one file per run;
#: ``folds`` and ``predictions`` vary with the model and are written as they come).
SCHEMAS.update({
    "runs": pa.schema([
        ("run_id", _str), ("model", _str), ("protocol", _str), ("config", _str),
        ("seed", _i64), ("shuffled_labels", _bool), ("shuffle_scope", _str),
        ("created_at", _str), ("sozstore_version", _str), ("seconds", _f64),
        ("n_patients", _i64), ("auroc", _f64), ("auprc", _f64), ("patient_auroc_mean", _f64),
        ("f1_mean", _f64),
        # added with the patient bootstrap and cross-cohort protocols (issue 8); older runs'
        # files lack them and read as null through the views (union_by_name)
        ("test_store", _str), ("comparator", _str), ("n_boot", _i64),
    ]),
    # reference: clinician, truth (generated cohorts) or resected (resected contacts of
    # seizure-free patients). ci_low/ci_high: patient-bootstrap 95 % interval of a pooled
    # (fold "all") metric, null elsewhere. Rows with a comparator hold a paired difference
    # (metric diff_<name>: this run minus the comparator on the same folds and patients).
    "metrics": pa.schema([
        ("run_id", _str), ("fold", _str), ("site", _str), ("reference", _str),
        ("metric", _str), ("value", _f64), ("ci_low", _f64), ("ci_high", _f64),
        ("comparator", _str),
    ]),
})


def to_table(name: str, rows: Sequence[dict[str, Any]] | dict[str, list[Any]]) -> pa.Table:
    """Rows (a list of dicts or a dict of columns) as a table with the catalog schema."""
    schema = SCHEMAS[name]
    if isinstance(rows, dict):
        columns = {f.name: rows.get(f.name, [None] * len(next(iter(rows.values()), [])))
                   for f in schema}
        return pa.table(columns, schema=schema)
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows],
                                schema=schema)


def write_fragment(store: Store, name: str, table: pa.Table, *, site: str,
                   subject: str | None, part: str, if_changed: bool = False) -> Path:
    """Write one fragment of a catalog table atomically and return its path.

    Parameters
    ----------
    store : Store
        The store.
    name : str
        Catalog table.
    table : pyarrow.Table
        Its rows (cast to the table's schema).
    site, subject : str
        The partition (``subject`` None: a site-level file, as ``sites``).
    part : str
        The file's name without suffix.
    if_changed : bool
        Write nothing if the file already holds these rows.
    """
    path = store.fragment(name, site, subject, part)
    write_parquet_atomic(table.cast(SCHEMAS[name]), path, if_changed=if_changed)
    return path


@fill_doc
def scan_table(store: StoreLike, name: str) -> pl.LazyFrame:
    """Lazily scan a catalog table of a store (empty with the right schema if absent).

    Parameters
    ----------
    %(store)s
    name : str
        Catalog table.
    """
    # imported here: store.py reads SCHEMAS from this module
    from sozstore.store.store import Store

    if name not in CATALOG_TABLES:
        raise ValueError(f"unknown catalog table {name!r}")
    return Store.open(store).scan(name)


@fill_doc
def read_table(store: StoreLike, name: str) -> pl.DataFrame:
    """Read a catalog table of a store into memory (see :func:`scan_table`).

    Parameters
    ----------
    %(store)s
    name : str
        Catalog table.
    """
    return scan_table(store, name).collect()
