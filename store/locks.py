"""Who owns what in a store: owner tokens, run leases, writer locks and worker binding.

The protocol is drawn in ``docs/commit-protocol.md``. In short:

* every process has an **owner token**; temporaries carry it (``<final>.tmp-<owner>-<n>``,
  :func:`sozstore.store.atomic.temporary_sibling`), and worker processes of a run adopt
  their parent's (:func:`bind_worker_to_parent`);
* a run holds its owner's **lease** (:func:`run_lease`) for its whole life: an exclusive
  ``flock`` on ``STORE/_leases/<owner>.lease``, which the kernel drops when the process
  dies however it dies, so "the lease file exists and can be locked" proves the owner dead
  (:func:`owner_is_dead`) and its temporaries abandoned;
* two runs that would write the same partition take the same **writer lock**
  (:func:`writer_locks`, ``STORE/_locks/<name>.lock``): the second waits a bounded time,
  then fails with one line naming the holder (:class:`StoreBusy`).

Lock and lease files are removed on release (before the ``flock`` is dropped); an acquirer
checks after locking that the path still names the file it locked, and starts again if
not, so removal never lets two holders in.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sozstore._logging import logger
from sozstore.store.layout import safe_component

LEASES_DIR = "_leases"
LOCKS_DIR = "_locks"
LEASE_SUFFIX = ".lease"
#: How long a run waits for another run's writer lock before it gives up (seconds).
LOCK_WAIT_S = 600.0
#: Temporaries whose owner never held a lease are abandoned after this long (seconds).
STALE_AFTER_S = 24 * 3600.0
_POLL_S = 0.2
#: Linux ``prctl`` option: the signal a process gets when its parent thread dies.
_PR_SET_PDEATHSIG = 1

_token_lock = threading.Lock()
_token: tuple[int, str] | None = None  # (pid it was made in, token)
_leases_lock = threading.Lock()
_leases: dict[Path, tuple[int, int]] = {}  # lease path -> (fd, holders in this process)


class StoreBusy(RuntimeError):
    """Another run holds a writer lock this run needs; the message names it."""


# --------------------------------------------------------------------------- owner token
def owner_token() -> str:
    """This process's owner token (``<pid>x<random>``; a forked child gets its own)."""
    global _token
    with _token_lock:
        if _token is None or _token[0] != os.getpid():
            _token = (os.getpid(), f"{os.getpid()}x{secrets.token_hex(4)}")
        return _token[1]


def adopt_owner(token: str) -> None:
    """Make ``token`` this process's owner token (a worker writing for its parent's run)."""
    global _token
    if not token or "-" in token or "/" in token:
        raise ValueError(f"bad owner token {token!r}")
    with _token_lock:
        _token = (os.getpid(), token)


def owner_of(temporary_name: str, mark: str) -> str | None:
    """The owner token in a temporary's name (``x.parquet.tmp-<owner>-<n>``), or None."""
    _, sep, tail = temporary_name.rpartition(mark)
    if not sep or "-" not in tail:
        return None
    owner = tail.rsplit("-", 1)[0]
    return owner or None


# --------------------------------------------------------------------------- lock files
def _open_locked(path: Path, *, blocking: bool, create: bool = True) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path``, or None when another holds it and
    ``blocking`` is false. The returned fd's file is the one at ``path`` (a holder that
    removed it in between is detected and the open retried).

    Raises
    ------
    FileNotFoundError
        When ``create`` is false and there is no file at ``path``.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed it while we waited: lock the new file


def _release(path: Path, fd: int) -> None:
    """Remove ``path`` while still holding its lock, then drop the lock."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)


def _holder_info() -> dict[str, object]:
    return {"owner": owner_token(), "pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[:2]}


def _write_info(fd: int, info: dict[str, object]) -> None:
    blob = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, blob, 0)


def _describe_holder(path: Path) -> str:
    """Who holds the lock at ``path``, from what it wrote there (best effort)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another run"
    what = " ".join(Path(str(a)).name for a in info.get("argv", [])[:2]) or "a run"
    return (f"{what} (pid {info.get('pid')} on {info.get('host')}, owner {info.get('owner')}, "
            f"since {info.get('since')})")


# --------------------------------------------------------------------------- leases
def lease_path(root: Path, token: str) -> Path:
    """The lease file of owner ``token`` in the store at ``root``."""
    return root / LEASES_DIR / f"{token}{LEASE_SUFFIX}"


@contextlib.contextmanager
def run_lease(root: Path) -> Iterator[str]:
    """Hold this process's lease in the store at ``root`` for the block; yield the token.

    Nested and concurrent uses in one process share one lease (counted); the file is removed
    when the last one ends.
    """
    token = owner_token()
    path = lease_path(root, token)
    with _leases_lock:
        fd, holders = _leases.get(path, (-1, 0))
        if holders == 0:
            taken = _open_locked(path, blocking=False)
            if taken is None:  # only this process's token names this file
                raise RuntimeError(f"{path}: lease held by another process")
            fd = taken
            _write_info(fd, _holder_info())
        _leases[path] = (fd, holders + 1)
    try:
        yield token
    finally:
        with _leases_lock:
            fd, holders = _leases[path]
            if holders == 1:
                del _leases[path]
                _release(path, fd)
            else:
                _leases[path] = (fd, holders - 1)


def owner_is_dead(root: Path, token: str, *, age_s: float) -> bool:
    """Whether owner ``token`` is provably dead, so its temporaries may be removed.

    Parameters
    ----------
    root : Path
        The store's root.
    token : str
        The owner token from a temporary's name.
    age_s : float
        Seconds since the temporary was last modified; used only for owners that never held
        a lease (writers outside a run), which count as dead after :data:`STALE_AFTER_S`.
    """
    path = lease_path(root, token)
    if token == owner_token():
        return False
    try:
        fd = _open_locked(path, blocking=False, create=False)
    except FileNotFoundError:
        return age_s > STALE_AFTER_S
    if fd is None:
        return False  # the owner is alive and holds its lease
    os.close(fd)
    return True


def remove_dead_leases(root: Path) -> list[Path]:
    """Remove the lease files of dead owners (each after its temporaries are gone)."""
    removed: list[Path] = []
    folder = root / LEASES_DIR
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob(f"*{LEASE_SUFFIX}")):
        if path.stem == owner_token():
            continue
        try:
            fd = _open_locked(path, blocking=False, create=False)
        except FileNotFoundError:
            continue
        if fd is not None:
            _release(path, fd)
            removed.append(path)
    return removed


# --------------------------------------------------------------------------- writer locks
def lock_path(root: Path, name: str) -> Path:
    """The file of writer lock ``name`` (``site=hup``) in the store at ``root``."""
    return root / LOCKS_DIR / f"{safe_component(name)}.lock"


def site_lock_name(site: str) -> str:
    """The writer lock that guards every partition of ``site`` (ETL and features alike)."""
    return f"site={safe_component(site)}"


@contextlib.contextmanager
def writer_locks(root: Path, names: Iterable[str], *, wait_s: float = LOCK_WAIT_S,
                 what: str = "write") -> Iterator[None]:
    """Hold the writer locks ``names`` for the block, taken in sorted order.

    Parameters
    ----------
    root : Path
        The store's root.
    names : iterable of str
        Lock names (:func:`site_lock_name`); sorted, so two runs never deadlock.
    wait_s : float
        How long to wait for a lock another run holds; 0: do not wait.
    what : str
        What this run does, for the messages (``"ingest site hup"``).

    Raises
    ------
    StoreBusy
        When a lock is still held after ``wait_s``; the message names the holder.
    """
    held: list[tuple[Path, int]] = []
    try:
        for name in sorted(set(names)):
            path = lock_path(root, name)
            deadline = time.monotonic() + max(0.0, wait_s)
            told = False
            while True:
                fd = _open_locked(path, blocking=False)
                if fd is not None:
                    break
                holder = _describe_holder(path)
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"{root}: cannot {what}: {holder} is writing {name} "
                                    f"(waited {wait_s:g} s); try again when it finishes")
                if not told:
                    logger.warning("waiting up to %g s: %s is writing %s", wait_s, holder,
                                   name)
                    told = True
                time.sleep(_POLL_S)
            _write_info(fd, _holder_info())
            held.append((path, fd))
        yield
    finally:
        for path, fd in reversed(held):
            _release(path, fd)


# --------------------------------------------------------------------------- workers
def bind_worker_to_parent(parent_pid: int, token: str) -> None:
    """Make this worker process write under its parent's owner token and die with it.

    A worker's temporaries carry the parent's token, whose lease the parent holds; so once
    the parent is dead its workers must be too, or the next run's cleanup could remove what
    a surviving worker still writes (and ``--workers N`` would leave orphans). Linux:
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere (and as a backstop) a daemon thread
    polls ``getppid()``.

    Parameters
    ----------
    parent_pid : int
        The pid of the run's process (``os.getpid()`` there).
    token : str
        The run's owner token (:func:`owner_token` there).
    """
    adopt_owner(token)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="sozstore-parent-watch", daemon=True).start()
