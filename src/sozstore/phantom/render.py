"""Render planned recordings into signal files, in-process or in worker processes.

A :class:`RenderJob` is a picklable description of one signal file (its spec, format and
header data). :func:`run_jobs` renders a batch, optionally in a process pool: the data do
not depend on the number of workers because every job carries its own seed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sozstore._logging import logger
from sozstore.phantom.brainvision import BrainVisionWriter
from sozstore.phantom.edf import EdfAnnotation, EdfSignal, EdfWriter
from sozstore.phantom.physiology import SignalSimulator, SignalSpec, physical_bounds

__all__ = ["RenderJob", "render_job", "run_jobs"]

# below this many samples in a batch, rendering in-process beats starting workers
_AUTO_PARALLEL_SAMPLES = 1.0e8


@dataclass(frozen=True)
class RenderJob:
    """One signal file to write.

    Attributes
    ----------
    path : Path
        ``.edf`` file or ``.vhdr`` header.
    fmt : str
        ``edf`` (plain EDF), ``edf+`` (EDF+C with annotations) or ``brainvision``.
    spec : SignalSpec
        What to synthesise.
    labels : tuple of str
        Channel names in file order.
    patient, recording : str
        EDF header identification fields (ignored for BrainVision).
    start : datetime
        Recording start (EDF header / BrainVision ``New Segment``).
    annotations : tuple of EdfAnnotation
        EDF+ annotations, or BrainVision markers.
    record : tuple of (int, str) or None
        EDF samples per record and duration text.
    block_s : float
        Synthesis block length.
    """

    path: Path
    fmt: str
    spec: SignalSpec
    labels: tuple[str, ...]
    patient: str = "X X X X"
    recording: str = "Startdate X X X X"
    start: datetime = datetime(2000, 1, 1)
    annotations: tuple[EdfAnnotation, ...] = ()
    record: tuple[int, str] | None = None
    block_s: float = 4.0


def render_job(job: RenderJob) -> int:
    """Synthesise one recording and write it.

    Parameters
    ----------
    job : RenderJob
        The job.

    Returns
    -------
    int
        Bytes written (all files of the recording).
    """
    sim = SignalSimulator(job.spec)
    block = max(1, round(job.block_s * job.spec.sfreq))
    job.path.parent.mkdir(parents=True, exist_ok=True)
    if job.fmt in ("edf", "edf+"):
        bounds = physical_bounds(job.spec)
        signals = [
            EdfSignal(
                label=lab,
                physical_min=-float(b),
                physical_max=float(b),
                prefilter="HP:0.1Hz LP:0.4*Fs",
            )
            for lab, b in zip(job.labels, bounds, strict=True)
        ]
        writer: EdfWriter | BrainVisionWriter = EdfWriter(
            job.path,
            signals,
            sfreq=job.spec.sfreq,
            patient=job.patient,
            recording=job.recording,
            start=job.start,
            annotations=job.annotations,
            plus=job.fmt == "edf+",
            record=job.record,
        )
        paths = [job.path]
    elif job.fmt == "brainvision":
        writer = BrainVisionWriter(
            job.path,
            job.labels,
            sfreq=job.spec.sfreq,
            markers=[(a.onset, a.text) for a in job.annotations],
            meas_date=job.start,
        )
        paths = writer.paths
    else:
        raise ValueError(f"unknown format {job.fmt!r}")
    with writer:
        while sim.position < sim.n_samples:
            writer.write(sim.render(block))
    return int(sum(p.stat().st_size for p in paths))


_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Make spawned workers start with one BLAS thread (the pool already uses the cores).

    The variables must be in the environment when a worker starts, before it imports
    numpy, so they are set in this process for the life of the pool and then restored.
    """
    saved = {var: os.environ.get(var) for var in _BLAS_VARS}
    for var in _BLAS_VARS:
        os.environ.setdefault(var, "1")
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def run_jobs(jobs: Sequence[RenderJob], *, n_jobs: int = 1, desc: str = "phantom") -> list[int]:
    """Render jobs, largest first, showing a progress bar on a terminal.

    Parameters
    ----------
    jobs : sequence of RenderJob
        The jobs.
    n_jobs : int
        Worker processes (``1``: in this process; ``0``: automatic).
    desc : str
        Progress-bar label.

    Returns
    -------
    list of int
        Bytes written per job, in the order of ``jobs``.
    """
    sizes = np.array([j.spec.n_samples * j.spec.n_channels for j in jobs], dtype=np.float64)
    order = list(np.argsort(-sizes, kind="stable"))
    out = [0] * len(jobs)
    total = float(sizes.sum())
    if n_jobs == 0:  # auto: worker start-up (~1 s each) only pays off for big batches
        n_jobs = min(4, os.cpu_count() or 1) if total > _AUTO_PARALLEL_SAMPLES else 1
    logger.info(
        "rendering %d recordings (%.1f M samples) with %d worker(s)", len(jobs), total / 1e6, n_jobs
    )
    with tqdm(total=total / 1e6, unit="Msample", desc=desc, disable=None, leave=False) as bar:
        if n_jobs <= 1 or len(jobs) <= 1:
            for i in order:
                out[i] = render_job(jobs[i])
                bar.update(sizes[i] / 1e6)
        else:
            # spawn, not fork: the caller may hold threads (BLAS, loggers) that fork would
            # copy in a locked state
            ctx = multiprocessing.get_context("spawn")
            with (
                _single_threaded_children(),
                ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool,
            ):
                futures = {pool.submit(render_job, jobs[i]): i for i in order}
                for fut in as_completed(futures):
                    i = futures[fut]
                    out[i] = fut.result()
                    bar.update(sizes[i] / 1e6)
    return out
