"""Atomic writes: a reader sees the old file or the new one, never half of either.

Every file and every Zarr group is written under a temporary name beside its final place
(``*.tmp-<owner>-<n>``, which no reader's glob matches) and renamed into place; POSIX
``rename`` is atomic within a file system. ``<owner>`` is the writing run's owner token
(:mod:`sozstore.store.locks`): leftovers of a killed run are removed by
:func:`clean_temporaries` at the start of a later one, and only when their owner is provably
dead, so a run never removes the files another run is writing (docs/commit-protocol.md).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sozstore.store.locks import owner_is_dead, owner_of, owner_token, remove_dead_leases

TMP_MARK = ".tmp-"
_counter = itertools.count()


def temporary_sibling(final: Path) -> Path:
    """A unique temporary path in the same folder as ``final``, named by this process's
    owner token (:func:`sozstore.store.locks.owner_token`)."""
    return final.with_name(f"{final.name}{TMP_MARK}{owner_token()}-{next(_counter)}")


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
        leaves modification times alone). The old file is read with its page checksums
        verified: a damaged old file (or one that cannot be read at all) counts as changed
        and is replaced, never compared as if its bytes were right.

    Returns
    -------
    bool
        Whether a file was written.

    Notes
    -----
    Every page carries a CRC-32 (``write_page_checksum``), which ``sozstore verify``
    (``store/verify.py``) checks: DuckDB and polars read a flipped page byte as a wrong
    value.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if if_changed and final.exists():
        try:
            old = pq.read_table(final, page_checksum_verification=True)
            if old.schema.equals(table.schema) and old.equals(table):
                return False
        except (OSError, pa.ArrowException):
            pass  # damaged or unreadable old file: replace it
    _replace_atomic(final, lambda tmp: pq.write_table(table, tmp, compression=compression,
                                                      write_page_checksum=True))
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


def clean_temporaries(root: Path, store_root: Path | None = None) -> list[Path]:
    """Remove the temporaries under ``root`` whose owner is provably dead; return them.

    A temporary's owner (the token in its name) is dead when its lease file in the store can
    be locked, or, for an owner that never held a lease, when the temporary is older than
    :data:`sozstore.store.locks.STALE_AFTER_S`; temporaries of live runs, this process's
    included, are left alone. When ``root`` is the whole store, dead owners' lease files are
    removed after their temporaries.

    Parameters
    ----------
    root : Path
        The folder to clean (the store's root, or a part of it).
    store_root : Path, optional
        The store's root, where the leases live; ``root`` when omitted.
    """
    leases_root = root if store_root is None else store_root
    removed: list[Path] = []
    if not root.exists():
        return removed
    dead: dict[str, bool] = {}
    now = time.time()
    for path in sorted(root.rglob(f"*{TMP_MARK}*"), key=lambda p: len(p.parts), reverse=True):
        if TMP_MARK not in path.name or not path.exists():
            continue
        owner = owner_of(path.name, TMP_MARK)
        if owner is None:
            continue
        try:
            age_s = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if not dead.get(owner):  # an owner alive a moment ago (or leaseless) is asked again
            dead[owner] = owner_is_dead(leases_root, owner, age_s=age_s)
        if not dead[owner]:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if leases_root == root:
        # a dead owner may have left temporaries outside a partial ``root``: its lease goes
        # only when the whole store has been cleaned
        remove_dead_leases(leases_root)
    return removed
