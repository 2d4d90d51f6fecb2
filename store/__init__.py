"""The store: chunked Zarr signals and Parquet catalog, feature and result tables, read in
slices. :class:`Store` owns every path inside it and the schema of every table."""

from sozstore.store.store import FeatureTable, Store, StoreLike

__all__ = ["FeatureTable", "Store", "StoreLike"]
