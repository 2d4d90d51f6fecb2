"""DuckDB views and named queries shipped with the package (``*.sql`` files beside this one)."""
