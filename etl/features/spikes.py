"""Interictal spike detection (Janca et al. 2015) as a pure array function.

The detector follows the envelope-distribution method of Janca R. et al., "Detection of
interictal epileptiform discharges using signal envelope distribution modelling",
Brain Topogr 28(1):172-183, 2015, with the defaults of its Python port (epycom
``detect_spikes_janca``) and of the MATLAB v25 callers (``-bl 10 -bh 60 -k1 3.65 -dec 200``).

Pipeline, on all channels of a block at once:

1. resample to ``decimate_to`` (200 Hz) with a polyphase FIR (anti-aliased, no delay);
2. notch the mains and its harmonics that fall inside the band;
3. band-pass ``band`` (10-60 Hz) with Chebyshev-II high- and low-pass filters, zero phase;
4. envelope ``|hilbert(x)|``;
5. fit a log-normal to the envelope in ``window_s`` windows every ``step_s`` (MLE:
   mean and SD of the log-envelope), smooth the two parameters with a moving average over
   one window length and interpolate them (cubic) to every sample;
6. threshold ``k1 * (mode + median) - k3 * (mean - mode)`` of the fitted log-normal;
7. envelope maxima in supra-threshold segments; maxima closer than ``merge_s`` are one
   event, placed at the largest;
8. optionally, ambiguous events with the lower ``k2`` kept only if an obvious (``k1``)
   event occurs on another channel within +-10 ms.

The function holds no state: a caller streams a long recording in blocks that overlap by
margins, and keeps the events whose time falls in each block's core (see
:func:`detect_spikes`, Notes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from sozstore.etl.features.kernels import detector_input, row_median

__all__ = ["SpikeEvents", "detect_spikes"]

#: Pole radius of the mains notches (Janca's ``_filt50Hz``): about 1 Hz wide at 200 Hz.
_NOTCH_POLE_RADIUS = 0.985
#: Passband ripple and stopband attenuation (dB) of the Chebyshev-II filters (Janca).
_CHEB_RP, _CHEB_RS = 6.0, 60.0
#: Normalised transition widths of the low- and high-pass (Janca: +0.1 and -0.05).
_LOWPASS_TRANSITION, _HIGHPASS_TRANSITION = 0.1, 0.05
#: Coincidence window (s) of the multichannel rule that confirms ambiguous spikes.
_MULTICHANNEL_TOL_S = 0.010
#: A channel whose median band envelope is below this (microvolts) is flat: the log-normal
#: fit would otherwise model floating-point noise and "detect" spikes in it.
_FLAT_ENVELOPE_UV = 1e-3
#: Largest denominator of the resampling ratio (odd EDF rates such as 999.41 Hz).
_MAX_DENOMINATOR = 4096


@dataclass(frozen=True)
class SpikeEvents:
    """Detected interictal spikes, one entry per event in parallel arrays.

    Attributes
    ----------
    channel : numpy.ndarray of int64, shape (n_events,)
        Row index into the ``x`` given to :func:`detect_spikes`.
    time_s : numpy.ndarray of float64, shape (n_events,)
        Time of the envelope peak, seconds from the first sample of ``x``.
    amplitude : numpy.ndarray of float64, shape (n_events,)
        Envelope at the peak minus the background level ``mode + median`` of the fitted
        log-normal (microvolts; Janca's ``MA``).
    clear : numpy.ndarray of bool, shape (n_events,)
        ``True`` for obvious spikes (above ``k1``), ``False`` for ambiguous ones (above
        ``k2`` only, confirmed by an obvious spike on another channel).

    Events are sorted by time, then channel.
    """

    channel: NDArray[np.int64]
    time_s: NDArray[np.float64]
    amplitude: NDArray[np.float64]
    clear: NDArray[np.bool_]

    def __len__(self) -> int:
        """Number of events."""
        return int(self.channel.size)


def detect_spikes(
    x: NDArray[np.floating],
    sfreq: float,
    *,
    mains_hz: float = 60.0,
    band: tuple[float, float] = (10.0, 60.0),
    k1: float = 3.65,
    k2: float | None = None,
    k3: float = 0.0,
    decimate_to: float = 200.0,
    window_s: float = 5.0,
    step_s: float = 1.0,
    merge_s: float = 0.12,
    edge_s: float = 1.0,
) -> SpikeEvents:
    """Detect interictal spikes in a block of SEEG with Janca's envelope-model detector.

    Parameters
    ----------
    x : array_like, shape (n_channels, n_samples)
        Signal in microvolts at ``sfreq`` (a 1-D array is one channel). A channel with
        any NaN sample in the block (margins included) produces no detection in the
        whole block: the log-normal background and the filters are undefined across a
        gap, and zero-filling it would create edges that look like spikes. A flat channel
        (median band envelope below 1e-3 microvolt) produces none either.
    sfreq : float
        Sampling rate of ``x`` in Hz; must exceed ``2 * band[1]``.
    mains_hz : float
        Mains frequency; its harmonics up to ``1.1 * band[1]`` are notched (Janca's
        narrow notch). Store signals are already notched, where this is harmless; it
        keeps the function right on raw data too.
    band : (float, float)
        Pass band of the Chebyshev-II filters in Hz.
    k1 : float
        Threshold factor of obvious spikes (3.65: Janca's Python port and v25 callers).
    k2 : float or None
        Threshold factor of ambiguous spikes (``k2 < k1``); ``None`` (or ``k2 == k1``)
        reports obvious spikes only.
    k3 : float
        Skewness correction ``- k3 * (mean - mode)`` of the threshold; Janca's default 0.
    decimate_to : float
        Rate (Hz) at which the detector works; the thresholds were tuned at 200 Hz.
    window_s, step_s : float
        Length and step of the windows in which the background log-normal is fitted.
    merge_s : float
        Maxima closer than this (on one channel) are one event (polyspike union).
    edge_s : float
        Events within this many seconds of either end of ``x`` are dropped (filter and
        Hilbert transients, one-sided background).

    Returns
    -------
    SpikeEvents
        The detected events.

    Raises
    ------
    ValueError
        If ``x`` is not 1-D or 2-D, if the block is shorter than one background window,
        or if the options are inconsistent.

    Notes
    -----
    The background at a sample depends on the envelope up to about
    ``window_s / 2 + window_s`` (the window plus the smoothing) on each side, so a block's
    detections near its ends differ slightly from a whole-recording run. A streaming
    caller should therefore read each block with margins of at least ``edge_s`` (required)
    and preferably ``3 * window_s`` (15 s, Janca's buffer overlap), and keep the events
    whose ``time_s`` falls in the block's core. Blocks shorter than about ``4 * window_s``
    (20 s) fit the background from too few windows to be reliable; 60-300 s blocks are
    the intended use. Peak memory is about 3 copies of ``x`` at its own precision; runtime
    about 0.06 s per channel-hour at 1 kHz (float32 input, one core).

    The store's signals are already notched by the ETL, so the ``spikes`` feature set calls
    this with ``mains_hz=0`` (version 2; version 1 notched a second time and decimated in
    float64): on six 62-s blocks of the generated cohort 1108 of version 1's 1123 spikes
    fall on the same sample, the same count in all; phantom F1 0.976 for both.
    """
    data = _as_detector_array(x, sfreq, band=band, k1=k1, k2=k2, window_s=window_s,
                              step_s=step_s)
    if data.shape[0] == 0 or data.shape[1] == 0:
        return _empty()
    lo, hi = float(band[0]), float(band[1])
    # NaN channels are excluded up front (zeroed, unusable); offsets removed
    data, usable = detector_input(data)
    env, fs = _band_envelope(data, sfreq, decimate_to=decimate_to, mains_hz=mains_hz,
                             band=(lo, hi), window_s=window_s)
    win = int(round(window_s * fs))
    step = max(1, int(round(step_s * fs)))
    background, skew = _background(env, win, step, window_s / step_s, k3)
    usable &= row_median(env[:, ::4]) > _FLAT_ENVELOPE_UV  # a flatness test: 50 Hz will do

    merge = int(round(merge_s * fs))
    edge = int(round(edge_s * fs))
    # obvious spikes: above k1; the k3 term is Janca's optional skewness correction
    ch1, ix1 = _peaks_inside(env, k1 * background - skew, merge, edge, usable)
    channel, index, clear = ch1, ix1, np.ones(ch1.size, dtype=bool)
    if k2 is not None and k2 < k1:
        ch2, ix2 = _peaks_inside(env, k2 * background - skew, merge, edge, usable)
        ch2, ix2 = _confirmed_ambiguous(ch1, ix1, ch2, ix2, merge,
                                        int(round(_MULTICHANNEL_TOL_S * fs)))
        channel = np.concatenate([ch1, ch2])
        index = np.concatenate([ix1, ix2])
        clear = np.concatenate([clear, np.zeros(ch2.size, dtype=bool)])
    return _spike_events(env, background, channel, index, clear, fs)


def _as_detector_array(x: NDArray[np.floating], sfreq: float, *, band: tuple[float, float],
                       k1: float, k2: float | None, window_s: float, step_s: float
                       ) -> NDArray[np.floating]:
    """``x`` as a (n_channels, n_samples) array, after checking the options.

    float32 input (the store's samples) stays float32: it is decimated in float32, which
    halves the cost of the anti-alias products; anything else becomes float64.
    """
    data = np.asarray(x)
    if data.dtype != np.float32:
        data = data.astype(np.float64)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ValueError(f"x must be (n_channels, n_samples), got shape {data.shape}")
    lo, hi = float(band[0]), float(band[1])
    if not 0.0 < lo < hi:
        raise ValueError(f"band must be increasing and positive, got {band}")
    if hi >= 0.5 * sfreq:
        raise ValueError(f"band upper edge {hi} Hz needs sfreq > {2 * hi} Hz, got {sfreq}")
    if k2 is not None and k2 > k1:
        raise ValueError(f"k2 ({k2}) must not exceed k1 ({k1})")
    if step_s <= 0 or window_s < step_s:
        raise ValueError("need 0 < step_s <= window_s")
    return data


def _band_envelope(data: NDArray[np.floating], sfreq: float, *, decimate_to: float,
                   mains_hz: float, band: tuple[float, float], window_s: float
                   ) -> tuple[NDArray[np.float64], float]:
    """Steps 1-4: resample, notch, band-pass and take the Hilbert envelope.

    Everything after the decimation is float64 (the high-order Chebyshev sections need
    it). Returns the envelope and its rate.

    Raises
    ------
    ValueError
        If the resampled block is shorter than ``window_s`` or the band reaches its Nyquist.
    """
    lo, hi = band
    resampled, fs = _resample(data, sfreq, decimate_to)
    d = resampled.astype(np.float64, copy=False)
    n = d.shape[1]
    if n < int(round(window_s * fs)):
        raise ValueError(f"block of {n / fs:.2f} s is shorter than window_s={window_s} s")
    if hi >= 0.5 * fs:
        raise ValueError(f"band upper edge {hi} Hz is above the Nyquist of {fs:.1f} Hz")
    d = _notch(d, fs, mains_hz, hi)
    d = _bandpass(d, fs, lo, hi)
    return np.abs(signal.hilbert(d, axis=-1)), fs


def _background(env: NDArray[np.float64], win: int, step: int, n_smooth: float, k3: float
                ) -> tuple[NDArray[np.float64], NDArray[np.float64] | float]:
    """Steps 5-6: the background level ``mode + median`` of the fitted log-normal per
    sample, and the skewness term ``k3 * (mean - mode)`` the thresholds subtract (0.0
    when ``k3`` is 0)."""
    mu, sigma = _lognormal_background(env, win, step, n_smooth)
    mode = np.exp(mu - sigma**2)
    median = np.exp(mu)
    skew = k3 * (np.exp(mu + sigma**2 / 2.0) - mode) if k3 else 0.0
    return mode + median, skew


def _peaks_inside(env: NDArray[np.float64], thr: NDArray[np.float64], merge: int, edge: int,
                  usable: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Step 7: merged envelope maxima above ``thr`` on usable channels, at least ``edge``
    samples from either end."""
    n = env.shape[1]
    ch, ix = _envelope_peaks(env, thr, merge)
    keep = usable[ch] & (ix >= edge) & (ix < n - edge)
    return ch[keep], ix[keep]


def _confirmed_ambiguous(ch1: NDArray[np.int64], ix1: NDArray[np.int64],
                         ch2: NDArray[np.int64], ix2: NDArray[np.int64], merge: int, tol: int
                         ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Step 8: the ambiguous maxima ``(ch2, ix2)`` that are new spikes confirmed by an
    obvious one ``(ch1, ix1)`` on another channel within ``tol`` samples."""
    # an ambiguous maximum within the merge distance of an obvious one on the same
    # channel is that obvious event seen with a lower threshold, not a new spike
    same = _count_within(ch1, ix1, ch2, ix2, merge) > 0
    ch2, ix2 = ch2[~same], ix2[~same]
    # multichannel rule: an obvious spike on ANOTHER channel within +-10 ms; count all
    # obvious spikes in the window and subtract those of the candidate's own channel
    any_ch = _count_within(np.zeros_like(ch1), ix1, np.zeros_like(ch2), ix2, tol)
    own_ch = _count_within(ch1, ix1, ch2, ix2, tol)
    confirmed = any_ch > own_ch
    return ch2[confirmed], ix2[confirmed]


def _spike_events(env: NDArray[np.float64], background: NDArray[np.float64],
                  channel: NDArray[np.int64], index: NDArray[np.int64],
                  clear: NDArray[np.bool_], fs: float) -> SpikeEvents:
    """The events sorted by time, then channel, with their amplitudes above background."""
    order = np.lexsort((channel, index))
    channel, index, clear = channel[order], index[order], clear[order]
    return SpikeEvents(
        channel=channel.astype(np.int64),
        time_s=index.astype(np.float64) / fs,
        amplitude=(env[channel, index] - background[channel, index]).astype(np.float64),
        clear=clear.astype(bool),
    )


def _empty() -> SpikeEvents:
    return SpikeEvents(
        channel=np.zeros(0, dtype=np.int64),
        time_s=np.zeros(0, dtype=np.float64),
        amplitude=np.zeros(0, dtype=np.float64),
        clear=np.zeros(0, dtype=bool),
    )


def _resample(data: NDArray[np.floating], sfreq: float, target: float
              ) -> tuple[NDArray[np.floating], float]:
    """Polyphase resampling to about ``target`` Hz; return the data and the exact new rate.

    ``resample_poly`` applies a linear-phase anti-alias FIR and compensates its delay, so
    output sample ``k`` lies at ``k / fs`` like the input's (zero phase, as Janca's
    ``decimate(..., ftype='fir')``), for integer and fractional ratios alike. Integer
    down-sampling (1 kHz -> 200 Hz) applies the same filter as matrix products
    (:func:`_decimate`), several times faster than ``resample_poly``.
    """
    ratio = Fraction(target / sfreq).limit_denominator(_MAX_DENOMINATOR)
    if ratio == 1:
        return data, float(sfreq)
    fs = float(sfreq) * ratio.numerator / ratio.denominator
    if ratio.numerator == 1:
        return _decimate(data, ratio.denominator), fs
    out = signal.resample_poly(data, ratio.numerator, ratio.denominator, axis=-1)
    return out, fs


def _decimate(data: NDArray[np.floating], q: int) -> NDArray[np.floating]:
    """``signal.resample_poly(data, 1, q, axis=-1)`` (same filter, same output samples,
    equal up to float rounding) computed with small matrix products.

    Output ``k`` is ``sum_t h[H - t] x[q k + t]`` for ``|t| <= H = 10 q`` (``h``: the
    Kaiser-windowed FIR that ``resample_poly`` designs), zeros outside the block. The
    input is cut into frames of ``F = q M >= H`` samples, ``M`` outputs each; an output
    frame is its input frame times ``T0`` plus the last ``H`` samples of the previous frame
    times ``Tm`` plus the first ``H`` of the next times ``Tp``. The frames of all channels
    are stacked (one zero frame between channels) and the products are taken a few hundred
    frames at a time, small enough that BLAS stays on one thread.
    """
    half = 10 * q
    h = signal.firwin(2 * half + 1, 1.0 / q, window=("kaiser", 5.0))
    n_ch, n = data.shape
    n_out = -(-n // q)
    m = -(-half // q)
    f = q * m
    n_f = -(-n // f)
    frames = np.zeros((n_ch * (n_f + 1) + 1, f), dtype=data.dtype)
    frames[:-1].reshape(n_ch, (n_f + 1) * f)[:, f:f + n] = data
    e = np.arange(-half, f + half)[:, None] - q * np.arange(m)[None, :]
    taps = np.where(np.abs(e) <= half, h[np.clip(half - e, 0, 2 * half)], 0.0
                    ).astype(data.dtype)
    t_prev, t_own, t_next = taps[:half], taps[half:half + f], taps[half + f:]
    out = np.empty((frames.shape[0], m), dtype=data.dtype)
    rows = frames.shape[0]
    chunk = max(1, 131072 // (f * m))
    for a in range(0, rows, chunk):
        b = min(a + chunk, rows)
        np.matmul(frames[a:b], t_own, out=out[a:b])
        a1 = max(a, 1)
        out[a1:b] += frames[a1 - 1:b - 1, f - half:] @ t_prev
        b1 = min(b, rows - 1)
        out[a:b1] += frames[a + 1:b1 + 1, :half] @ t_next
    del frames
    return out[:-1].reshape(n_ch, (n_f + 1) * m)[:, m:m + n_out].copy()


def _notch(d: NDArray[np.float64], fs: float, mains_hz: float, hi: float
           ) -> NDArray[np.float64]:
    """Janca's mains notches (zeros on the unit circle, poles at 0.985), zero phase."""
    sections = []
    f = mains_hz
    while mains_hz > 0 and f <= 1.1 * hi and f < 0.5 * fs:
        w = 2.0 * np.pi * f / fs
        b = [1.0, -2.0 * np.cos(w), 1.0]
        a = [1.0, -2.0 * _NOTCH_POLE_RADIUS * np.cos(w), _NOTCH_POLE_RADIUS**2]
        sections.append(signal.tf2sos(b, a))
        f += mains_hz
    if not sections:
        return d
    return signal.sosfiltfilt(np.concatenate(sections), d, axis=-1)


def _bandpass(d: NDArray[np.float64], fs: float, lo: float, hi: float) -> NDArray[np.float64]:
    """Chebyshev-II high- and low-pass (Janca's design), applied forward-backward.

    Second-order sections instead of Janca's transfer functions: same filters, without the
    numerical instability his code has to check for. Both filters run as one cascade in
    one forward-backward pass (Janca runs them one after the other: the two differ only in
    the end transients, which fall in the discarded edges).
    """
    return signal.sosfiltfilt(_bandpass_sos(fs, lo, hi), d, axis=-1)


@functools.lru_cache(maxsize=16)
def _bandpass_sos(fs: float, lo: float, hi: float) -> NDArray[np.float64]:
    wp = 2.0 * lo / fs
    ws = max(wp - _HIGHPASS_TRANSITION, 0.5 * wp)
    order, wn = signal.cheb2ord(wp, ws, _CHEB_RP, _CHEB_RS)
    sos_h = signal.cheby2(order, _CHEB_RS, wn, btype="highpass", output="sos")
    wp = 2.0 * hi / fs
    ws = min(wp + _LOWPASS_TRANSITION, 0.5 * (1.0 + wp))
    order, wn = signal.cheb2ord(wp, ws, _CHEB_RP, _CHEB_RS)
    sos_l = signal.cheby2(order, _CHEB_RS, wn, btype="lowpass", output="sos")
    return np.concatenate([sos_h, sos_l])  # cached: callers must not modify it


def _lognormal_background(env: NDArray[np.float64], win: int, step: int, n_smooth: float
                          ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-sample log-normal parameters (mu, sigma) of the envelope, shape (n_ch, n) each.

    Windowed means of ``log env`` and of its square come from cumulative sums, so every
    window of every channel costs O(1). The log is centred per channel first: the
    variance is then a difference of two small numbers, not of two large ones.
    """
    n = env.shape[1]
    log_env = np.log(np.maximum(env, np.finfo(np.float64).tiny))
    centre = log_env.mean(axis=1, keepdims=True)
    z = log_env - centre
    starts = np.arange(0, n - win + 1, step)
    c1 = np.zeros((env.shape[0], n + 1))
    c2 = np.zeros((env.shape[0], n + 1))
    np.cumsum(z, axis=1, out=c1[:, 1:])
    np.cumsum(z * z, axis=1, out=c2[:, 1:])
    m1 = (c1[:, starts + win] - c1[:, starts]) / win
    m2 = (c2[:, starts + win] - c2[:, starts]) / win
    phat = np.stack([m1 + centre, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))])  # (2, n_ch, n_w)

    # Janca smooths (mu, sigma) with a forward-backward moving average of one window
    # length (in window steps); the padding must stay shorter than the series
    n_avg = int(round(n_smooth))
    n_w = starts.size
    if n_avg > 1 and n_w > 1:
        kernel = np.ones(n_avg) / n_avg
        phat = signal.filtfilt(kernel, [1.0], phat, axis=-1, padlen=min(3 * n_avg, n_w - 1))

    centres = starts + win // 2
    mu = _cubic_to_samples(phat[0], centres, n)
    sigma = np.maximum(_cubic_to_samples(phat[1], centres, n), 0.0)
    return mu, sigma


def _cubic_to_samples(values: NDArray[np.float64], centres: NDArray[np.int64], n: int
                      ) -> NDArray[np.float64]:
    """Cubic (Catmull-Rom) interpolation of per-window values to every sample.

    Janca uses a not-a-knot cubic spline; on the smoothed, uniformly spaced parameters the
    local Catmull-Rom cubic differs from it far less than the parameters' own estimation
    noise, and needs only numpy. Before the first and after the last window centre the
    value is held constant, as in Janca's code.
    """
    n_w = centres.size
    if n_w == 1:
        return np.repeat(values, n, axis=1)
    step = int(centres[1] - centres[0])
    first, last = int(centres[0]), int(centres[-1])
    out = np.empty((values.shape[0], n))
    out[:, :first] = values[:, :1]
    out[:, last:] = values[:, -1:]
    # uniform knots: every segment between two centres has the same weights per offset
    f = np.arange(step) / step
    weights = 0.5 * np.stack([f * (-1.0 + f * (2.0 - f)),
                              2.0 + f * f * (-5.0 + 3.0 * f),
                              f * (1.0 + f * (4.0 - 3.0 * f)),
                              f * f * (f - 1.0)])
    padded = np.concatenate([values[:, :1], values, values[:, -1:]], axis=1)
    knots = np.stack([padded[:, j:j + n_w - 1] for j in range(4)], axis=-1)
    seg = out[:, first:last].reshape(values.shape[0], n_w - 1, step)
    np.matmul(knots, weights, out=seg)  # (rows, segments, 4) @ (4, step)
    return out


def _envelope_peaks(env: NDArray[np.float64], thr: NDArray[np.float64], merge: int
                    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Largest envelope maximum of each cluster of supra-threshold maxima.

    A candidate is a sample above threshold that is a maximum among its supra-threshold
    neighbours (so every supra-threshold segment has at least one, even when it is cut by
    the threshold on a slope). Candidates of one channel closer than ``merge`` samples
    to the previous one are chained into a cluster (Janca's union of polyspikes by
    dilation/erosion), and the cluster is reported at its highest envelope.

    Returns
    -------
    (channel, index) : numpy.ndarray of int64, each shape (n_events,)
        Sorted by channel, then sample.
    """
    above = env > thr
    prev_lower = np.ones_like(above)
    next_lower = np.ones_like(above)
    # strict on the left, non-strict on the right: one candidate per plateau
    prev_lower[:, 1:] = (env[:, 1:] > env[:, :-1]) | ~above[:, :-1]
    next_lower[:, :-1] = (env[:, :-1] >= env[:, 1:]) | ~above[:, 1:]
    ch, ix = np.nonzero(above & prev_lower & next_lower)  # row-major: sorted by (ch, ix)
    if ch.size == 0:
        return ch.astype(np.int64), ix.astype(np.int64)
    new = np.ones(ch.size, dtype=bool)
    new[1:] = (ch[1:] != ch[:-1]) | (ix[1:] - ix[:-1] > merge)
    group = np.cumsum(new) - 1
    vals = env[ch, ix]
    gmax = np.maximum.reduceat(vals, np.flatnonzero(new))
    is_max = vals >= gmax[group]
    _, first = np.unique(group[is_max], return_index=True)
    pick = np.flatnonzero(is_max)[first]
    return ch[pick].astype(np.int64), ix[pick].astype(np.int64)


def _count_within(ch_ref: NDArray[np.int64], ix_ref: NDArray[np.int64],
                  ch_q: NDArray[np.int64], ix_q: NDArray[np.int64], tol: int
                  ) -> NDArray[np.int64]:
    """For each query (channel, sample), count reference events on the same channel
    within ``tol`` samples, with one sorted key search for all channels at once."""
    if ix_q.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ix_ref.size == 0:
        return np.zeros(ix_q.size, dtype=np.int64)
    span = int(max(ix_ref.max(), ix_q.max())) + 2 * tol + 1
    key_ref = np.sort(ch_ref.astype(np.int64) * span + ix_ref)
    key_q = ch_q.astype(np.int64) * span + ix_q
    return (np.searchsorted(key_ref, key_q + tol, side="right")
            - np.searchsorted(key_ref, key_q - tol, side="left")).astype(np.int64)
