"""Streaming notch + resampling equals the whole-recording reference."""

from __future__ import annotations

import numpy as np
import pytest

from sozstore.etl.dsp import ResamplePlan, reference_process


@pytest.mark.parametrize("source", [512.0, 999.4121105232217, 1000.0, 1024.0, 2048.0,
                                    249.85355222464145])
def test_streaming_equals_reference(source: float) -> None:
    plan = ResamplePlan(source, 1000.0, 60.0)
    rng = np.random.default_rng(1)
    n = int(source * 23.7)
    t = np.arange(n) / source
    x = np.cumsum(rng.standard_normal((3, n)), axis=1) + 40 * np.sin(2 * np.pi * 60 * t)
    ref = reference_process(x, plan)
    blocks = plan.blocks(n, plan.block_length(4.0))
    out = np.concatenate([plan.process(x[:, a:d], a, b, c, n) for a, b, c, d in blocks], axis=1)
    assert out.shape == ref.shape == (3, plan.n_out(n))
    assert np.max(np.abs(out - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_notch_removes_mains() -> None:
    plan = ResamplePlan(1000.0, 1000.0, 50.0)
    t = np.arange(20000) / 1000.0
    x = (np.sin(2 * np.pi * 50 * t) + np.sin(2 * np.pi * 100 * t) + np.sin(2 * np.pi * 13 * t))
    y = plan.process(x[None], 0, 0, x.size, x.size)[0]
    spec = np.abs(np.fft.rfft(y[2000:-2000]))
    freqs = np.fft.rfftfreq(y[2000:-2000].size, 1 / 1000)

    def at(f: float) -> float:
        """Spectrum magnitude at the bin nearest ``f`` Hz."""
        return float(spec[np.argmin(np.abs(freqs - f))])

    assert at(50) < 0.01 * at(13)
    assert at(100) < 0.01 * at(13)


def test_nan_samples_stay_missing() -> None:
    plan = ResamplePlan(512.0, 1000.0, 60.0)
    x = np.random.default_rng(0).standard_normal((2, 5120))
    x[1, 2000:2100] = np.nan
    y = plan.process(x, 0, 0, 5120, 5120)
    assert np.isnan(y[1]).sum() == pytest.approx(100 * 1000 / 512, abs=3)
    assert not np.isnan(y[0]).any()
    assert np.isfinite(y[1, :3500]).all()


@pytest.mark.parametrize("source, store", [(2048.0, 2000.0), (1999.6, 2000.0), (4096.0, 2000.0)])
def test_streaming_equals_reference_at_store_rates_above_1k(source: float, store: float) -> None:
    plan = ResamplePlan(source, store, 50.0)
    rng = np.random.default_rng(2)
    n = int(source * 9.3)
    x = np.cumsum(rng.standard_normal((2, n)), axis=1)
    ref = reference_process(x, plan)
    blocks = plan.blocks(n, plan.block_length(3.0))
    out = np.concatenate([plan.process(x[:, a:d], a, b, c, n) for a, b, c, d in blocks], axis=1)
    assert out.shape == ref.shape == (2, plan.n_out(n))
    assert np.max(np.abs(out - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_harmonic_notches_have_the_fundamentals_width() -> None:
    # ETL version 2: every notch 2 Hz wide at 60 Hz mains, so a sharp transient does not
    # leave wide-notch ringing (an HFO look-alike) at the harmonics
    from scipy import signal

    from sozstore.etl.dsp import notch_sos

    sos = notch_sos(2000.0, 60.0)
    freqs = np.linspace(1.0, 900.0, 180000)
    _, h = signal.sosfreqz(sos, worN=freqs, fs=2000.0)
    for f0 in (60.0, 180.0, 420.0):
        near = np.abs(freqs - f0) < 5.0
        below = freqs[near][np.abs(h[near]) < 1 / np.sqrt(2)]
        assert below.max() - below.min() == pytest.approx(2.0, abs=0.1), f0
