"""Synthetic multi-site SEEG cohorts written in each site's real on-disk layout.

No real patient signals are available to the project, so this subpackage generates
cohorts with physiology an ETL and the SOZ models can be tested on: shaft-correlated 1/f
background, interictal spikes and HFOs concentrated in a true onset zone, seizures with
low-voltage fast onset and spread, mains, artifacts, bad channels and noisy clinician
labels, all recorded in ground-truth Parquet tables.

Public API
----------
generate_cohort
    Write ``OUT/raw/<site>`` (HUP-like BIDS/EDF, ds003029-like BIDS/BrainVision, a French
    manifest + EDF+ site), ``OUT/sites/<site>.toml`` and ``OUT/truth/*.parquet``.
fill_realdata
    Write synthetic signal files into a copy of a real OpenNeuro metadata folder.
write_long_edf
    Stream a long EDF+ file (e.g. 20 h) with bounded memory, for memory benches.
PhantomConfig
    Every knob, with realistic defaults.

Modules
-------
physiology
    Pure array functions (background, spikes, HFOs, seizures, mains, artifacts).
edf, brainvision
    Streaming writers.
plan, sites, fill, cohort
    Planning, site layouts, real-metadata filling, orchestration.
"""

from __future__ import annotations

from sozstore.phantom.cohort import CohortSummary, SiteSummary, generate_cohort, write_long_edf
from sozstore.phantom.config import PhantomConfig
from sozstore.phantom.fill import fill_realdata

__all__ = [
    "CohortSummary",
    "PhantomConfig",
    "SiteSummary",
    "fill_realdata",
    "generate_cohort",
    "write_long_edf",
]
