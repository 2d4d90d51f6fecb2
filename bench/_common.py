"""Helpers shared by the benchmark scripts in ``bench/`` (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def cpu_model() -> str:
    """``platform.processor()``, or the model name from /proc/cpuinfo when it is empty."""
    proc = platform.processor()
    model = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        model = match[1].strip() if match else ""
    except OSError:
        pass
    return f"platform.processor()={proc!r}; cpuinfo model name={model!r}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import mne
    import numcodecs
    import numpy
    import scipy
    import zarr

    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0]
    except OSError:
        pass
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "mne": mne.__version__,
        "git": _git_head(),
        "loadavg": os.getloadavg(),
    }


def _git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, text=True,
                              capture_output=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=BENCH, text=True, capture_output=True,
                               check=False).stdout.strip()
        return head + (" (+uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def command_line() -> str:
    """The command that was run, as typed from the repository root."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(BENCH.parent)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def write_json(name: str, payload: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _each_fd(paths: list[Path], action: Callable[[int], object]) -> None:
    """Call ``action(fd)`` on each readable file of ``paths`` (missing ones are skipped)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            action(fd)
        finally:
            os.close(fd)


def evict(paths: list[Path]) -> None:
    """Drop ``paths`` from the page cache (fsync first: dirty pages are not dropped).

    Only these files are affected (``posix_fadvise(DONTNEED)``), not the whole machine's cache.
    """
    _each_fd(paths, lambda fd: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))


def fsync_all(paths: list[Path]) -> None:
    _each_fd(paths, os.fsync)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
