"""Ground-truth tables of a phantom cohort (``OUT/truth/*.parquet``).

The schemas are fixed here so that empty tables still carry their column types and the
ETL's tests can join on them without guessing.

* ``spikes``: planted interictal spikes, kind ``spike`` (a contact's own spikes and their
  field on onset-zone neighbours) or ``propagated`` (onset-zone spikes copied, delayed
  and attenuated, to network contacts).
* ``hfos``: every planted ``ripple`` and ``fast_ripple`` (pathological and physiological
  alike), the reference for scoring HFO detectors.
* ``transients``: confounders a detector should not count: benign ``sharp`` transients
  and ``spindle`` bursts.
* ``recordings.reference`` (``none``, ``common``, ``average``) and
  ``recordings.onset_pattern`` (``lvfa``, ``hypersync``; null without a seizure);
  ``channels.irritative`` (irritative-zone contact) and ``channels.ecg_leak``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

__all__ = ["TRUTH_SCHEMAS", "Truth"]

_S, _F, _I, _B = pl.Utf8, pl.Float64, pl.Int64, pl.Boolean
_REC: dict[str, type[pl.DataType]] = {"site": _S, "subject": _S, "source_path": _S}

#: Column types of every truth table.
TRUTH_SCHEMAS: dict[str, dict[str, type[pl.DataType]]] = {
    "recordings": {
        **_REC,
        "task": _S,
        "sfreq": _F,
        "n_channels": _I,
        "duration_s": _F,
        "mains_hz": _F,
        "reference": _S,
        "onset_pattern": _S,
    },
    "channels": {
        **_REC,
        "raw_name": _S,
        "channel": _S,
        "electrode": _S,
        "contact": _I,
        "type": _S,
        "bad": _B,
        "soz": _B,
        "resected": _B,
        "soz_true": _B,
        "irritative": _B,
        "ecg_leak": _B,
    },
    "events": {**_REC, "onset_s": _F, "kind": _S, "raw_text": _S},
    "subjects": {
        "site": _S,
        "subject": _S,
        "outcome_raw": _S,
        "seizure_free": _B,
        "engel_class": _I,
        "n_recordings": _I,
    },
    "spikes": {**_REC, "channel": _S, "time_s": _F, "kind": _S},
    "hfos": {**_REC, "channel": _S, "time_s": _F, "kind": _S},
    "seizures": {**_REC, "onset_s": _F, "offset_s": _F},
    "artifacts": {**_REC, "channel": _S, "onset_s": _F, "duration_s": _F, "kind": _S},
    "transients": {**_REC, "channel": _S, "time_s": _F, "duration_s": _F, "kind": _S},
}


class Truth:
    """Column-wise accumulator of the truth tables."""

    def __init__(self) -> None:
        self._cols: dict[str, dict[str, list[object]]] = {
            name: {col: [] for col in schema} for name, schema in TRUTH_SCHEMAS.items()
        }

    def add(self, table: str, **row: object) -> None:
        """Append one row.

        Parameters
        ----------
        table : str
            Table name (a key of :data:`TRUTH_SCHEMAS`).
        **row
            Every column of the table.
        """
        cols = self._cols[table]
        if row.keys() != cols.keys():
            missing = set(cols) ^ set(row)
            raise KeyError(f"{table}: columns {sorted(missing)} missing or unexpected")
        for key, value in row.items():
            cols[key].append(value)

    def frame(self, table: str) -> pl.DataFrame:
        """Return one table as a polars frame with its fixed schema.

        Parameters
        ----------
        table : str
            Table name.

        Returns
        -------
        polars.DataFrame
            The rows collected so far.
        """
        return pl.DataFrame(self._cols[table], schema=TRUTH_SCHEMAS[table], strict=False)

    def write(self, folder: Path) -> dict[str, Path]:
        """Write every table as ``<folder>/<table>.parquet``.

        Parameters
        ----------
        folder : Path
            Output folder (created).

        Returns
        -------
        dict of str to Path
            Table name to file.
        """
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for table in TRUTH_SCHEMAS:
            path = folder / f"{table}.parquet"
            self.frame(table).write_parquet(path)
            paths[table] = path
        return paths
