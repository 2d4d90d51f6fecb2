"""Precision and recall of the stored HFO detections against the phantom's planted HFOs.

Usage: ``python docs/evidence/hfo_detection.py COHORT`` where COHORT holds ``store/`` (after
``sozstore etl``) and ``truth/`` (from ``sozstore phantom``). Prints one row per source
rate and HFO kind: planted events on good contacts of the store, detections, precision
(detections that overlap a planted event of the same kind on the same contact, within
``TOLERANCE_S``) and recall (planted events that a detection overlaps).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from sozstore.store.catalog import read_table
from sozstore.store.duck import run_query

#: Slack around a detection when matching planted event times (a planted time is the
#: burst's centre; a detection's bounds are where its RMS crosses the threshold).
TOLERANCE_S = 0.025


def main(cohort: Path) -> None:
    store, truth = cohort / "store", cohort / "truth"
    recs = read_table(store, "recordings").select("recording_id", "site", "source_path",
                                                  "source_sfreq")
    good = read_table(store, "channels").filter(~pl.col("bad") & pl.col("type").is_in(
        ["seeg", "ecog"])).select("recording_id", "channel")
    planted = (pl.read_parquet(truth / "hfos.parquet")
               .join(recs, on=["site", "source_path"])
               .join(good, on=["recording_id", "channel"])
               .with_row_index("event"))
    found = pl.from_arrow(run_query(store, "SELECT recording_id, channel, start_s, end_s, "
                                           "kind FROM hfo_events"))
    found = found.join(good, on=["recording_id", "channel"]).join(
        recs.select("recording_id", "source_sfreq"), on="recording_id").with_row_index("hit")
    pairs = planted.join(found, on=["recording_id", "channel", "kind"], suffix="_found").filter(
        (pl.col("time_s") >= pl.col("start_s") - TOLERANCE_S)
        & (pl.col("time_s") <= pl.col("end_s") + TOLERANCE_S))
    rate = pl.when(pl.col("source_sfreq") >= 1998.0).then(pl.lit("2 kHz")).otherwise(
        pl.lit("<= 1 kHz")).alias("source")
    rows = []
    for (source, kind), p in planted.with_columns(rate).group_by("source", "kind"):
        f = found.with_columns(rate).filter((pl.col("source") == source)
                                            & (pl.col("kind") == kind))
        matched = pairs.filter(pl.col("event").is_in(p["event"].implode()))
        rows.append({"source": source, "kind": kind, "planted": p.height,
                     "detected": f.height,
                     "precision": matched["hit"].n_unique() / max(f.height, 1),
                     "recall": matched["event"].n_unique() / max(p.height, 1)})
    print(pl.DataFrame(rows).sort("source", "kind"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
