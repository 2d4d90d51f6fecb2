#!/usr/bin/env bash
# Type-check the installed package layout with mypy (the config is in pyproject.toml).
#
# etl/, store/, models/ and sql/ live at the top of the repository but install as
# sozstore.etl, sozstore.store, ... (see [tool.setuptools] package-dir). mypy resolves
# modules by folder, so it is given a temporary tree of links with that package layout.
set -euo pipefail
cd "$(dirname "$0")/.."
# a fixed place (inside mypy's own cache folder), so that cached results keep their paths
tree="$PWD/.mypy_cache/package-tree"
rm -rf "$tree" && mkdir -p "$tree/sozstore"
for entry in src/sozstore/*; do ln -s "$PWD/$entry" "$tree/sozstore/"; done
for pkg in etl store models sql; do ln -s "$PWD/$pkg" "$tree/sozstore/$pkg"; done
# report paths as they are in the repository, not in the link tree
repo_paths() {
    sed -e 's#^[^:]*package-tree/sozstore/\(etl\|store\|models\|sql\)/#\1/#' \
        -e 's#^[^:]*package-tree/sozstore/#src/sozstore/#'
}
MYPYPATH="$tree" mypy -p sozstore "$@" | repo_paths
MYPYPATH="$tree" mypy bench "$@" | repo_paths
