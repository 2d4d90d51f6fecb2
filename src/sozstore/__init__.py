"""sozstore: a multi-site SEEG store, feature tables and seizure-onset-zone model zoo.

Subpackages
-----------
sozstore.etl
    Per-site ETL from raw recordings (BIDS iEEG, EDF, BrainVision, FIF) into the store.
sozstore.store
    Chunked Zarr signals and the Parquet catalog, read in slices.
sozstore.models
    Streaming datasets and the model zoo.
sozstore.phantom
    Generator of synthetic multi-site cohorts in each site's real layout.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sozstore._logging import logger, set_log_level

try:
    __version__ = version("sozstore")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "logger", "set_log_level"]
