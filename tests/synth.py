"""Helpers that write small synthetic recordings for tests (never checked-in data)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sozstore.phantom.config import PhantomConfig
from sozstore.phantom.siteconfig import write_manifest_site

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
if not REALDATA.exists():  # CI clones next to the same shared folder; allow an override
    import os

    REALDATA = Path(os.environ.get("SOZSTORE_REALDATA", "/work/shared/realdata"))

PLANTED_NAME = "Zorglub_Bartholomew"
PLANTED_CODE = "HN-7731942"
PLANTED_BIRTH = dt.date(1961, 3, 2)


def write_edf(path: Path, data: np.ndarray, sfreq: float, names: Sequence[str], *,
              annotations: Sequence[tuple[float, float, str]] = (),
              patient_name: str = PLANTED_NAME) -> Path:
    """A small EDF+ file (microvolts in ``data``) with identifying header fields planted,
    written with the project's own streaming EDF writer."""
    from sozstore.phantom.edf import EdfAnnotation, EdfSignal, EdfWriter

    signals = []
    for row, name in zip(data, names):
        lo, hi = float(np.nanmin(row)), float(np.nanmax(row))
        if hi - lo < 1e-3:
            lo, hi = lo - 1.0, hi + 1.0
        signals.append(EdfSignal(label=name, physical_min=lo, physical_max=hi))
    birth = PLANTED_BIRTH.strftime("%d-%b-%Y").upper()
    path.parent.mkdir(parents=True, exist_ok=True)
    with EdfWriter(path, signals, sfreq=sfreq,
                   patient=f"{PLANTED_CODE} M {birth} {patient_name}",
                   recording="Startdate 17-MAY-2019 CHU-EEG-3 X X",
                   start=dt.datetime(2019, 5, 17, 13, 47, 11),
                   annotations=[EdfAnnotation(o, t, d or None) for o, d, t in annotations]
                   ) as writer:
        step = int(sfreq * 10)
        for i in range(0, data.shape[1], step):
            writer.write(np.nan_to_num(data[:, i:i + step]))
    return path


def seeg_like(n_channels: int, seconds: float, sfreq: float, seed: int = 0) -> np.ndarray:
    """Correlated brown-ish noise in microvolts with 50 Hz mains."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sfreq))
    x = np.cumsum(rng.standard_normal((n_channels, n)), axis=1)
    x -= np.linspace(0.0, 1.0, n)[None] * x[:, -1:]  # no drift, so no clipping in EDF
    x = 20 * x / (np.std(x, axis=1, keepdims=True) + 1e-9)
    x += 5 * np.sin(2 * np.pi * 50 * np.arange(n) / sfreq)
    return x


def manifest_site(root: Path, rows: Sequence[dict[str, str]], *, name: str = "unit",
                  extra: str = "") -> Path:
    """A manifest-layout site config over ``root``; returns the TOML path."""
    return write_manifest_site(root, rows, name=name, salt="unit-test", extra=extra)


#: Short recordings and small implants of the calibration cohort (12 patients at the
#: phantom's default, calibrated level ingest in about a minute).
CALIBRATION: dict = dict(
    ictal_duration_s=60.0, interictal_duration_s=60.0, chul_interictal_hours=0.02,
    hup_onset_s=25.0, seizure_duration_s=(12.0, 20.0), postictal_s=5.0,
    lvfa_duration_s=(2.0, 4.0), electrodes_per_subject=(4, 5), contacts_per_electrode=(6, 8),
)


def ingest_cohort(out: Path, config: PhantomConfig | None, *, subjects_per_site: int = 4,
                  seed: int = 5) -> Path:
    """Generate a three-site cohort into ``out``, run the ETL of every site and the default
    features into ``out / "store"``; return the store."""
    from sozstore.etl.config import load_site_config
    from sozstore.etl.features.engine import compute_features
    from sozstore.etl.pipeline import run_site
    from sozstore.phantom import generate_cohort

    generate_cohort(out, subjects_per_site=subjects_per_site, seed=seed, config=config)
    store = out / "store"
    for site in ("hup", "multicenter", "chul"):
        report = run_site(load_site_config(out / "sites" / f"{site}.toml"), store,
                          progress=False)
        assert report.exit_code == 0, report.lines()
    assert compute_features(store, progress=False).exit_code == 0
    return store
