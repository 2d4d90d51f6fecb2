"""Atomic writes: a reader sees the old file or the new one, never half of either.

Every file and every Zarr group is written under a temporary name beside its final place
(``*.tmp-<pid>-<n>``, which no reader's glob matches) and renamed into place; POSIX
``rename`` is atomic within a file system. Leftovers of a killed run are removed by
:func:`clean_temporaries` at the start of the next one.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_MARK = ".tmp-"
_counter = itertools.count()


def temporary_sibling(final: Path) -> Path:
    """A unique temporary path in the same folder as ``final``."""
    return final.with_name(f"{final.name}{TMP_MARK}{os.getpid()}-{next(_counter)}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, final: Path, *, compression: str = "zstd",
                         if_changed: bool = False) -> bool:
    """Write ``table`` to ``final`` atomically.

    Parameters
    ----------
    table : pyarrow.Table
        The rows to write.
    final : Path
        Destination file; its folder is created.
    compression : str
        Parquet codec.
    if_changed : bool
        If true and ``final`` already holds an equal table, write nothing (so that a re-run
        leaves modification times alone).

    Returns
    -------
    bool
        Whether a file was written.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if if_changed and final.exists():
        try:
            old = pq.read_table(final)
            if old.schema.equals(table.schema) and old.equals(table):
                return False
        except (OSError, pa.ArrowException):
            pass  # unreadable old file: replace it
    _replace_atomic(final, lambda tmp: pq.write_table(table, tmp, compression=compression))
    return True


def write_bytes_atomic(data: bytes, final: Path) -> None:
    """Write ``data`` to ``final`` atomically (temporary sibling, fsync, rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomic(final, lambda tmp: tmp.write_bytes(data))


def _replace_atomic(final: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary sibling of ``final``, fsync it, rename it into place and fsync
    the folder; the temporary is removed if anything fails."""
    tmp = temporary_sibling(final)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(final.parent)


def replace_dir_atomic(tmp_dir: Path, final: Path) -> None:
    """Move a fully written folder (a Zarr group) into place, replacing any old one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if final.exists():
        trash = temporary_sibling(final)
        os.replace(final, trash)
    os.replace(tmp_dir, final)
    _fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def clean_temporaries(root: Path) -> list[Path]:
    """Remove temporaries left by a killed run under ``root``; return what was removed."""
    removed: list[Path] = []
    if not root.exists():
        return removed
    for path in sorted(root.rglob(f"*{TMP_MARK}*"), key=lambda p: len(p.parts), reverse=True):
        if TMP_MARK not in path.name or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
