"""The store: chunked Zarr signals and Parquet catalog tables, read in slices."""
