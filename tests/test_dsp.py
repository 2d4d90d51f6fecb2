"""Streaming notch + resampling equals the whole-recording reference; the streamed channel
moments equal numpy's on the whole signal."""

from __future__ import annotations

import numpy as np
import pytest

from sozstore.etl.dsp import ChannelMoments, ResamplePlan, reference_process


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


def test_channel_moments_equal_numpy_on_the_concatenated_signal() -> None:
    rng = np.random.default_rng(3)
    # a DC input in mV (large offset, small variance), ordinary SEEG, a channel with NaN
    # gaps, one that is all NaN and one flat
    x = rng.standard_normal((5, 10_007)) * np.array([[0.5], [80.0], [30.0], [1.0], [0.0]])
    x[0] += 2.5e6
    x[1] += 40.0
    x[2, 1000:1500] = np.nan
    x[2, 9000] = np.nan
    x[3] = np.nan
    x[4] = -12.0
    moments = ChannelMoments.zeros(5)
    for start in range(0, x.shape[1], 1234):  # uneven last block
        moments = moments.update(x[:, start:start + 1234])
    live = [0, 1, 2, 4]
    np.testing.assert_array_equal(moments.count, np.isfinite(x).sum(axis=1))
    np.testing.assert_array_equal(moments.n_nonfinite, [0, 0, 501, x.shape[1], 0])
    np.testing.assert_allclose(moments.mean[live], np.nanmean(x[live], axis=1), rtol=1e-12)
    np.testing.assert_allclose(moments.std[[1, 2]], np.nanstd(x[[1, 2]], axis=1), rtol=1e-9)
    # the DC channel: a 0.5-uV SD on a 2.5e6-uV offset is still measured to 1 % (the final
    # mean of squares minus squared mean loses about eps * offset**2 / variance)
    np.testing.assert_allclose(moments.std[0], np.nanstd(x[0]), rtol=1e-2)
    assert moments.mean[3] == 0.0 and moments.std[3] == 0.0
    assert moments.std[4] == 0.0
    assert moments.mean[4] == -12.0


def test_channel_moments_leave_out_infinities_and_do_not_mutate() -> None:
    block = np.array([[1.0, np.inf, 3.0], [-np.inf, np.nan, 2.0]])
    empty = ChannelMoments.zeros(2)
    moments = empty.update(block)
    np.testing.assert_array_equal(empty.count, [0.0, 0.0])
    np.testing.assert_array_equal(moments.count, [2.0, 1.0])
    np.testing.assert_array_equal(moments.n_nonfinite, [1, 2])
    np.testing.assert_allclose(moments.mean, [2.0, 2.0])
    np.testing.assert_allclose(moments.std, [1.0, 0.0])
