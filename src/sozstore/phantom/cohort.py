"""Generate a whole synthetic multi-site cohort (``generate_cohort``) and bench files."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sozstore._logging import logger
from sozstore.phantom.config import PhantomConfig, rng_for
from sozstore.phantom.edf import edf_recording_field, whole_records
from sozstore.phantom.plan import ChannelDef, plan_signal, plan_subject
from sozstore.phantom.render import RenderJob, render_job, run_jobs
from sozstore.phantom.sites import SITES
from sozstore.phantom.truth import Truth

__all__ = ["CohortSummary", "SiteSummary", "generate_cohort", "write_long_edf"]

_MARKER = ".sozstore-phantom.json"


@dataclass(frozen=True)
class SiteSummary:
    """What was generated for one site.

    Attributes
    ----------
    name : str
        Site key.
    root : Path
        ``OUT/raw/<site>``.
    toml : Path
        The site configuration ``OUT/sites/<site>.toml``.
    n_subjects, n_recordings : int
        Counts.
    n_bytes : int
        Size of every file under ``root``.
    """

    name: str
    root: Path
    toml: Path
    n_subjects: int
    n_recordings: int
    n_bytes: int


@dataclass(frozen=True)
class CohortSummary:
    """Summary of :func:`generate_cohort`.

    Attributes
    ----------
    out : Path
        The cohort folder.
    sites : dict of str to SiteSummary
        Per-site counts and paths, in generation order.
    truth : dict of str to Path
        Truth table name to Parquet file.
    seed : int
        The cohort seed.
    elapsed_s : float
        Wall time of the generation.
    """

    out: Path
    sites: dict[str, SiteSummary]
    truth: dict[str, Path]
    seed: int
    elapsed_s: float

    @property
    def site_tomls(self) -> dict[str, Path]:
        """Site key to its TOML configuration."""
        return {name: s.toml for name, s in self.sites.items()}

    @property
    def n_bytes(self) -> int:
        """Total size of the raw site folders."""
        return sum(s.n_bytes for s in self.sites.values())


def _prepare(out: Path, sites: Sequence[str]) -> None:
    """Create ``out``; clear site folders only if a previous phantom run made them."""
    out.mkdir(parents=True, exist_ok=True)
    ours = (out / _MARKER).is_file()
    for site in sites:
        folder = out / "raw" / site
        if folder.exists() and any(folder.iterdir()):
            if not ours:
                raise FileExistsError(
                    f"{folder} is not empty and was not made by sozstore.phantom; "
                    "choose an empty output folder"
                )
            shutil.rmtree(folder)


def generate_cohort(
    out: str | Path,
    *,
    sites: Sequence[str] = ("hup", "multicenter", "chul"),
    subjects_per_site: int = 4,
    seed: int = 0,
    config: PhantomConfig | None = None,
) -> CohortSummary:
    """Generate a synthetic multi-site SEEG cohort in each site's real on-disk layout.

    Writes ``OUT/raw/<site>/...`` (signals and metadata as the real counterpart stores
    them), ``OUT/sites/<site>.toml`` (a ready ETL site configuration) and
    ``OUT/truth/*.parquet`` (recordings, channels, events, subjects, spikes, hfos,
    seizures, artifacts).

    Parameters
    ----------
    out : str or Path
        Output folder; created if needed. Site folders left by an earlier phantom run
        are replaced; a non-empty folder of another origin is refused.
    sites : sequence of str
        Any of ``hup``, ``multicenter``, ``chul``.
    subjects_per_site : int
        Subjects per site (multicenter cycles through its JHH, NIH, UMF, UMMC sub-sites).
    seed : int
        Cohort seed. Every random choice derives from it, keyed by site, subject and
        recording, so adding a site or a subject leaves the others unchanged.
    config : PhantomConfig, optional
        Knobs; defaults to ``PhantomConfig()``.

    Returns
    -------
    CohortSummary
        Paths and counts.

    Raises
    ------
    ValueError
        On an unknown site or a non-positive subject count.
    FileExistsError
        If a target site folder holds data not written by the phantom.
    """
    t0 = time.perf_counter()
    cfg = config or PhantomConfig()
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise ValueError(f"unknown site(s) {unknown}; choose from {sorted(SITES)}")
    if len(set(sites)) != len(sites):
        raise ValueError("sites must not repeat")
    if subjects_per_site < 1:
        raise ValueError("subjects_per_site must be >= 1")
    out = Path(out)
    _prepare(out, sites)
    truth = Truth()
    builds = []
    for site in sites:
        logger.info("phantom: planning site %s (%d subjects)", site, subjects_per_site)
        builds.append(SITES[site](out, subjects_per_site, seed, cfg, truth))
    jobs: list[RenderJob] = [job for b in builds for job in b.jobs]
    run_jobs(jobs, n_jobs=cfg.n_jobs, desc="phantom cohort")
    truth_paths = truth.write(out / "truth")
    summaries = {}
    for b in builds:
        n_bytes = sum(p.stat().st_size for p in b.root.rglob("*") if p.is_file())
        summaries[b.name] = SiteSummary(
            b.name, b.root, b.toml, b.n_subjects, b.n_recordings, n_bytes
        )
    (out / _MARKER).write_text(
        json.dumps(
            {
                "generator": "sozstore.phantom",
                "seed": seed,
                "sites": list(sites),
                "subjects_per_site": subjects_per_site,
            },
            indent=2,
        )
    )
    elapsed = time.perf_counter() - t0
    logger.info(
        "phantom: %d recordings, %.1f MB in %.1f s",
        sum(s.n_recordings for s in summaries.values()),
        sum(s.n_bytes for s in summaries.values()) / 1e6,
        elapsed,
    )
    return CohortSummary(out=out, sites=summaries, truth=truth_paths, seed=seed, elapsed_s=elapsed)


def write_long_edf(
    path: str | Path,
    *,
    hours: float,
    n_channels: int = 64,
    sfreq: float = 1000.0,
    seed: int = 0,
    patient_name: str = "X",
) -> Path:
    """Stream a long SEEG EDF+ file to disk with bounded memory (for memory benches).

    The file carries the same physiology as the cohort (shaft-correlated 1/f background,
    spikes, HFOs, mains, artifacts; no seizure) and an identifying EDF+ header with
    ``patient_name`` so a privacy test can grep for it.

    Parameters
    ----------
    path : str or Path
        Output ``.edf`` file.
    hours : float
        Duration in hours (e.g. 20).
    n_channels : int
        Number of SEEG contacts (8 per electrode, stems ``A'``, ``B'``, ...).
    sfreq : float
        Sampling rate.
    seed : int
        Seed.
    patient_name : str
        Name written in the EDF+ patient field (ASCII; spaces become underscores).

    Returns
    -------
    Path
        The file written.
    """
    if hours <= 0 or n_channels < 1:
        raise ValueError("hours must be > 0 and n_channels >= 1")
    path = Path(path)
    # easy: the bench files stay what they were before the difficulty levels existed
    cfg = PhantomConfig(
        contacts_per_electrode=(8, 8),
        n_flat_channels=0,
        n_noisy_channels=1,
        electrodes_per_subject=(1, 1),
        difficulty="easy",
    )
    rng = rng_for(seed, "long-edf", "subject")
    n_el = -(-n_channels // 8)
    # French-style stems: A' .. Z' (left), then A .. Z (right), then AA' ...
    stems = [
        chr(65 + k % 26) + ("'" if k < 26 else "" if k < 52 else chr(65 + (k // 26) % 26) + "'")
        for k in range(n_el)
    ]
    sp = plan_subject(
        rng,
        site="bench",
        subject="long",
        stems=stems,
        modality=["seeg"] * len(stems),
        cfg=cfg,
        locale="fr",
    )
    chans = [ChannelDef(f"{s}{n}", "contact", (s, n), "seeg") for s, n in sp.contacts][:n_channels]
    n_samples, record = whole_records(hours * 3600.0, sfreq)
    planned = plan_signal(
        rng_for(seed, "long-edf", "plan"),
        sp,
        chans,
        sfreq=sfreq,
        n_samples=n_samples,
        mains_hz=50.0,
        cfg=cfg,
        seed_words=(int(seed) & 0xFFFFFFFF, 20, 0),
    )
    start = datetime(2021, 3, 14, 21, 0, 0)
    patient = sp.identity.edf_patient(patient_name)
    job = RenderJob(
        path=path,
        fmt="edf+",
        spec=planned.spec,
        labels=tuple(c.raw for c in chans),
        patient=patient,
        recording=edf_recording_field(start, "BENCH-LTM", "TECH", "Micromed_LTM"),
        start=start,
        record=record,
        block_s=10.0,
    )
    logger.info(
        "phantom: writing %.1f h x %d channels at %g Hz to %s", hours, len(chans), sfreq, path
    )
    render_job(job)
    return path
