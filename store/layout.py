"""Where things live inside a store.

.. code-block:: text

    STORE/
      signals/site=<site>/<recording_id>.zarr      one Zarr v3 group per recording
      catalog/<table>/site=<site>/subject=<subject>/<part>.parquet
      catalog/sites/site=<site>/site.parquet

Catalog tables are hive-partitioned by site and subject (the natural unit of deletion and of
patient-wise splits). Partition columns are also stored inside the files, so one file read on
its own is complete. Per-recording tables (``recordings``, ``channels``, ``events``) hold one
file per recording, named by its id: one recording's ETL task writes only its own files.
"""

from __future__ import annotations

import re
from pathlib import Path

CATALOG_TABLES = ("sites", "subjects", "recordings", "channels", "events", "contacts")
#: Tables under ``results/<table>/run=<run_id>/`` written by ``sozstore train``.
RESULT_TABLES = ("runs", "folds", "predictions", "metrics")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_component(text: str) -> str:
    """A path component made of safe characters only."""
    cleaned = _SAFE.sub("-", text).strip("-.")
    return cleaned or "x"


class StoreLayout:
    """Paths inside one store root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def signals(self) -> Path:
        return self.root / "signals"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    def zarr_path(self, site: str, recording_id: str) -> Path:
        return self.signals / f"site={safe_component(site)}" / f"{recording_id}.zarr"

    def table_dir(self, table: str) -> Path:
        if table not in CATALOG_TABLES:
            raise ValueError(f"unknown catalog table {table!r}")
        return self.catalog / table

    def partition(self, table: str, site: str, subject: str | None = None) -> Path:
        path = self.table_dir(table) / f"site={safe_component(site)}"
        if subject is not None:
            path = path / f"subject={safe_component(subject)}"
        return path

    def fragment(self, table: str, site: str, subject: str, name: str) -> Path:
        return self.partition(table, site, subject) / f"{safe_component(name)}.parquet"

    def table_glob(self, table: str) -> str:
        return str(self.table_dir(table) / "**" / "*.parquet")
