"""Pure array functions behind the feature sets: no I/O, vectorised across channels and clips.

Every function takes ``clips`` of shape ``(n_channels, n_clips, n_samples)`` (microvolts) and
returns arrays with the same two leading axes. A clip whose samples include NaN, or that is
flat (sd below :data:`FLAT_SD_UV`), yields NaN features; :func:`clip_validity` says which, so
tables can flag them instead of storing silent zeros.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import numpy as np
import pywt
import scipy.fft as sp_fft
from numpy.typing import NDArray
from scipy import signal

#: Clinical bands (Hz). Ripple and fast ripple follow Staba et al.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
    "gamma": (30.0, 80.0), "ripple": (80.0, 250.0), "fast_ripple": (250.0, 500.0),
}
_EPS = 1e-12


_BLAS: Any = None
_BLAS_LOCK = threading.Lock()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run the body with BLAS capped at one thread (for small matrix products).

    A multi-threaded OpenBLAS busy-waits for its helper threads; on a machine whose cores
    are busy (other workers, other jobs) a 20-MFLOP product then takes seconds instead of
    ~10 ms. One thread computes the same values (each output element is the same dot
    product). The cap is process-wide, so the lock keeps concurrent callers from restoring
    each other's limits; entering costs microseconds.
    """
    global _BLAS
    with _BLAS_LOCK:
        if _BLAS is None:
            try:
                from threadpoolctl import ThreadpoolController
                _BLAS = ThreadpoolController()
            except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
                _BLAS = False
        if not _BLAS:
            yield
            return
        with _BLAS.limit(limits=1, user_api="blas"):
            yield


#: Largest denominator of a resampling ratio (as the ETL's resampler, ``etl/dsp.py``).
MAX_DENOMINATOR = 4096
#: Samples (channels x time) resampled at a time by :func:`resample_core`: bounds the
#: filter's working copies (16 MiB of float32 in, about 3 such arrays in flight).
_RESAMPLE_GROUP = 2**22


def rate_ratio(sfreq: float, target: float) -> tuple[int, int]:
    """``(up, down)`` with ``sfreq * up / down == target`` (denominator at most 4096).

    Raises
    ------
    ValueError
        If no such ratio is within 1e-6 of ``target``.
    """
    ratio = Fraction(target / sfreq).limit_denominator(MAX_DENOMINATOR)
    if ratio <= 0 or abs(float(ratio) * sfreq - target) > 1e-6 * target:
        raise ValueError(f"cannot resample {sfreq} Hz to {target} Hz")
    return ratio.numerator, ratio.denominator


def resample_core(data: NDArray, sfreq: float, target: float, core: tuple[int, int]
                  ) -> NDArray[np.float32]:
    """The core ``data[:, a:b]`` resampled to ``target`` Hz, filtered with its margins.

    ``scipy.signal.resample_poly`` with its default anti-alias filter (the Kaiser FIR,
    beta 5, cut at the lower Nyquist, that the ETL's resampler uses: ``etl/dsp.py``), so
    zero phase: output sample ``k`` lies at input time ``a / sfreq + k / target``. The
    whole of ``data`` is filtered, margins included, and only the core is returned, so a
    block's core equals what resampling the whole recording gives wherever the margins
    cover the filter: ``10 * max(up, down) / up`` input samples (10 ms when decimating to
    1 kHz) plus ``a % down`` (the core is anchored on whole input and output samples).
    Outside the data the signal is extended symmetrically (``padtype="symmetric"``, as
    pywt's packets), which is local: no step at a recording's ends, and the first and
    last blocks equal the whole-recording result too. Non-finite samples are replaced by
    the channel's median for filtering (a clip that held them is flagged invalid by
    :func:`clip_validity` anyway; its neighbours see no step). Channels are filtered in
    groups of at most ``2**22`` samples, so working memory is bounded whatever the block.

    Parameters
    ----------
    data : array of shape (n_channels, n_samples)
        Samples at ``sfreq`` with margins around the core.
    sfreq, target : float
        Rates in Hz; ``target / sfreq`` must be a ratio ``up / down`` with ``down <= 4096``.
    core : (int, int)
        ``(a, b)``: the core in samples of ``data``; ``(b - a) * up / down`` must be whole.

    Returns
    -------
    array of shape (n_channels, (b - a) * up / down), float32
        ``data[:, a:b]`` itself (as float32) when the rates are equal.
    """
    a, b = core
    up, down = rate_ratio(sfreq, target)
    if up == down:
        return np.asarray(data[:, a:b], dtype=np.float32)
    if ((b - a) * up) % down:
        raise ValueError(f"{b - a} samples at {sfreq} Hz are not a whole number of samples "
                         f"at {target} Hz")
    trim = a % down
    first, count = (a - trim) * up // down, (b - a) * up // down
    x = data[:, trim:]
    n_ch = x.shape[0]
    out = np.empty((n_ch, count), dtype=np.float32)
    per_group = max(1, _RESAMPLE_GROUP // max(x.shape[1], 1))
    for c0 in range(0, n_ch, per_group):
        group = np.array(x[c0:c0 + per_group], dtype=np.float32)
        finite = np.isfinite(group)
        for row in np.flatnonzero(~finite.all(axis=1)):
            ok = group[row, finite[row]]
            group[row, ~finite[row]] = np.median(ok) if ok.size else 0.0
        y = signal.resample_poly(group, up, down, axis=-1, padtype="symmetric")
        out[c0:c0 + per_group] = y[:, first:first + count]
    return out


def to_clips(block: NDArray, clip_samples: int) -> NDArray:
    """``(n_channels, n_clips * clip_samples)`` -> ``(n_channels, n_clips, clip_samples)``."""
    n_ch, n = block.shape
    n_clips = n // clip_samples
    return block[:, : n_clips * clip_samples].reshape(n_ch, n_clips, clip_samples)


#: A clip whose standard deviation is below this (microvolts) is flat: far below any recorded
#: physiology or amplifier noise, above the float noise a notch leaves on a constant input.
FLAT_SD_UV = 0.1


def clip_validity(clips: NDArray) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(has_nan, flat)`` flags, each ``(n_channels, n_clips)``.

    ``flat`` is ``np.nanstd(clip) < FLAT_SD_UV`` on clips without NaN. The SD is only computed
    for clips whose range could allow it: ``|x_i - mean| <= sd * sqrt(n - 1)`` (Samuelson), so
    a clip whose range exceeds ``2 * sqrt(n - 1) * FLAT_SD_UV`` is not flat. The range (one
    max and one min pass, which also propagate NaN) replaces the NaN scan and the full SD.
    """
    n = clips.shape[-1]
    with np.errstate(invalid="ignore"):
        top = clips.max(axis=-1) if n else np.zeros(clips.shape[:-1], clips.dtype)
        bottom = clips.min(axis=-1) if n else top
        has_nan = np.isnan(top) | np.isnan(bottom)
        bound = 2.0 * np.sqrt(max(n - 1, 0)) * FLAT_SD_UV * (1.0 + 1e-3)
        maybe_flat = ~has_nan & ~((top - bottom) > bound)
    flat = np.zeros(has_nan.shape, dtype=bool)
    if maybe_flat.any():
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # empty clips: NaN, not flat
            flat[maybe_flat] = np.nanstd(clips[maybe_flat], axis=-1) < FLAT_SD_UV
    return has_nan, flat


def _invalid_mask(clips: NDArray, invalid: NDArray[np.bool_] | None = None
                  ) -> NDArray[np.bool_]:
    """``has_nan | flat``, or ``invalid`` when the caller already has it."""
    if invalid is not None:
        return invalid
    has_nan, flat = clip_validity(clips)
    return has_nan | flat


def log_amplitude_spectrum(clips: NDArray, sfreq: float, *, resolution_hz: float = 0.2,
                           fmax: float | None = None, invalid: NDArray[np.bool_] | None = None,
                           reference_sfreq: float | None = None) -> NDArray[np.float32]:
    """Log10 amplitude of the rFFT, bins ``resolution_hz .. fmax`` (DC dropped).

    A clip is cut into segments of ``sfreq / resolution_hz`` samples whose amplitude spectra
    are averaged (one segment for a 5-s clip at 0.2 Hz: 2500 bins up to 500 Hz at 1 kHz).

    The rFFT's amplitude grows with the samples per segment (a sine of amplitude ``A`` gives
    ``A * n / 2``), so at twice the rate every bin is twice as large. With
    ``reference_sfreq`` amplitudes are scaled by ``reference_sfreq / sfreq``: the rFFT the
    same segment would have at ``reference_sfreq`` (exact for content below both Nyquist
    frequencies), so bins mean the same at every rate; at ``sfreq == reference_sfreq``
    nothing changes.

    ``invalid`` (``(n_channels, n_clips)``, from :func:`clip_validity`) skips recomputing
    the flags.

    Returns
    -------
    array of shape (n_channels, n_clips, n_bins), float32
    """
    n_fft = int(round(sfreq / resolution_hz))
    n_ch, n_clips, n = clips.shape
    if n < n_fft:
        raise ValueError(f"clip of {n} samples is shorter than one {resolution_hz} Hz segment")
    n_seg = n // n_fft
    seg = clips[..., : n_seg * n_fft].reshape(n_ch, n_clips, n_seg, n_fft).astype(np.float64)
    amp = np.abs(np.fft.rfft(seg, axis=-1))
    amp = amp[:, :, 0] if n_seg == 1 else amp.mean(axis=2)  # the mean of one is itself
    if reference_sfreq is not None and reference_sfreq != sfreq:
        amp *= reference_sfreq / sfreq
    top = n_fft // 2 if fmax is None else int(np.floor(fmax / resolution_hz))
    out = amp[..., 1: top + 1]
    out += _EPS
    log_amp: NDArray[np.float32] = np.log10(out, out=out).astype(np.float32)
    log_amp[_invalid_mask(clips, invalid)] = np.nan
    return log_amp


def band_powers(clips: NDArray, sfreq: float, *, bands: dict[str, tuple[float, float]] | None
                = None, max_freq: float | None = None, invalid: NDArray[np.bool_] | None = None,
                time_clips: NDArray | None = None) -> dict[str, NDArray[np.float64]]:
    """Absolute band powers (uV^2, from the periodogram), line length, variance, skewness and
    kurtosis, each ``(n_channels, n_clips)``.

    Bands above ``max_freq`` (the recording's bandwidth: half the lower of source and store
    rates) are NaN: a band the source never recorded is missing, not zero.

    Band powers are integrals over Hz and mean the same at every rate. Line length (the
    mean absolute step between samples) and the moments depend on the sample spacing and
    on the bandwidth the samples hold, so they are taken from ``time_clips`` when given
    (the same clips at a fixed analysis rate, :func:`resample_core`; ``clips`` itself when
    omitted).

    Skewness and kurtosis are ``scipy.stats.skew`` / ``kurtosis`` (biased, Fisher), from
    the same central moments in one pass (float32 with pairwise sums: equal to scipy's
    float64 values to about 1e-6 relative). ``invalid`` (from :func:`clip_validity`) skips
    recomputing the flags.
    """
    bands = bands or BANDS
    # float32 samples, transforms and sums (the store's precision): NumPy sums a contiguous
    # axis pairwise, so a 5000-sample mean is off by ~1e-7 relative (measured), far below
    # the float32 the tables store, and a float64 accumulator would cost 3x (a casting
    # loop per reduction)
    x = np.asarray(clips, dtype=np.float32)
    n = x.shape[-1]
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    spec = np.abs(sp_fft.rfft(centred, axis=-1))
    spec **= 2
    spec /= sfreq * n
    spec[..., 1:-1] *= 2.0  # one-sided
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    df = freqs[1] - freqs[0]
    limit = min(0.5 * sfreq, max_freq if max_freq is not None else np.inf)
    invalid = _invalid_mask(clips, invalid)
    out: dict[str, NDArray[np.float64]] = {}
    for name, (lo, hi) in bands.items():
        idx = np.flatnonzero((freqs >= lo) & (freqs < hi))  # ascending bins: one slice
        value = (spec[..., idx[0]: idx[-1] + 1].sum(axis=-1).astype(np.float64) if idx.size
                 else np.zeros(spec.shape[:-1]))
        value *= df
        if hi > limit + 1e-9:
            value = np.full_like(value, np.nan)
        out[name] = value
    del spec
    if time_clips is not None and time_clips is not clips:
        del centred
        x = np.asarray(time_clips, dtype=np.float32)
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
    step = np.diff(x, axis=-1)
    np.abs(step, out=step)
    out["line_length"] = step.mean(axis=-1).astype(np.float64)
    del step, x
    # central moments as scipy.stats computes them: m_k = mean((x - mean)**k)
    sq = np.square(centred)
    m2 = sq.mean(axis=-1).astype(np.float64)  # numpy's var: this sum of squares over n
    centred *= sq
    m3 = centred.mean(axis=-1).astype(np.float64)
    np.square(sq, out=sq)
    m4 = sq.mean(axis=-1).astype(np.float64)
    del sq, centred
    with np.errstate(all="ignore"):
        # a constant clip leaves float32 rounding of its mean, not zero, in m2
        zero = m2 <= (8 * np.finfo(np.float32).eps * mean[..., 0].astype(np.float64)) ** 2
        out["skewness"] = np.where(zero, np.nan, m3 / m2**1.5)
        out["kurtosis"] = np.where(zero, np.nan, m4 / m2**2.0) - 3
    out["variance"] = m2
    for value in out.values():
        value[invalid] = np.nan
    return out


def wavelet_packet_energies(clips: NDArray, *, wavelet: str = "db4", level: int = 5,
                            invalid: NDArray[np.bool_] | None = None
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wavelet-packet log energies and relative energies of the ``2**level`` leaves.

    Equal to ``pywt.WaveletPacket(x, wavelet, mode="symmetric", maxlevel=level)
    .get_level(level, order="freq")`` per clip, computed for all channels and clips at once
    (one ``pywt.dwt`` per node over every channel and clip). ``invalid`` (from
    :func:`clip_validity`) skips recomputing the flags. Leaf ``k`` covers ``k .. k + 1``
    times ``rate / 2**(level + 1)`` Hz of the clips' rate, so the ``wpt`` set passes clips
    at a fixed analysis rate (:func:`resample_core`; 15.6-Hz leaves at 1 kHz).

    Returns
    -------
    log_energy, relative_energy : arrays of shape (n_channels, n_clips, 2**level)
        Leaves ordered from low to high frequency.
    """
    # float32 transforms (the samples' own precision; pywt keeps the input's dtype): half
    # the memory traffic of float64, energies summed pairwise in float32. Each node is
    # transformed on its own (2**level - 1 calls on all channels and clips at once), so no
    # level copies its children into one array.
    nodes = {"": np.ascontiguousarray(clips, dtype=np.float32)}
    for _ in range(level):
        children = {}
        for path, data in nodes.items():
            children[path + "a"], children[path + "d"] = pywt.dwt(data, wavelet,
                                                                  mode="symmetric", axis=-1)
        nodes = children
    energy = np.stack([np.square(nodes[p]).sum(axis=-1).astype(np.float64)
                       for p in _gray_order(level)], axis=-1)  # (n_channels, n_clips, leaves)
    log_energy = np.log(energy + _EPS)
    relative = energy / (energy.sum(axis=-1, keepdims=True) + _EPS)
    invalid = _invalid_mask(clips, invalid)
    log_energy[invalid] = np.nan
    relative[invalid] = np.nan
    return log_energy, relative


def _gray_order(level: int) -> list[str]:
    """Node paths of a wavelet-packet level in frequency order (the Gray code pywt uses)."""
    graycode = ["a", "d"]
    for _ in range(level - 1):
        graycode = ["a" + p for p in graycode] + ["d" + p for p in graycode[::-1]]
    return graycode


def correlation_upper(clips: NDArray, *, invalid: NDArray[np.bool_] | None = None
                      ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Pearson correlation between channels per clip, upper triangle.

    ``invalid`` (from :func:`clip_validity`) skips recomputing the flags.

    Returns
    -------
    i, j : arrays of shape (n_pairs,)
        Channel indices with ``i < j``.
    r : array of shape (n_clips, n_pairs), float32
        NaN for a pair where either clip is NaN or flat.
    """
    # float32 throughout (pairwise sums; unit-norm rows: the error of r is ~1e-7, below
    # the stored float32's resolution)
    x = np.asarray(clips, dtype=np.float32)
    centred = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.square(centred).sum(axis=-1, keepdims=True).astype(np.float64))
    invalid = _invalid_mask(clips, invalid)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = centred * (1.0 / norm).astype(np.float32)
    del centred
    z[invalid] = 0.0
    zt = np.ascontiguousarray(z.transpose(1, 0, 2))  # (n_clips, n_ch, n_samples)
    with _one_blas_thread():
        corr = zt @ zt.transpose(0, 2, 1)  # (n_clips, n_ch, n_ch), one BLAS call per clip
    i, j = np.triu_indices(clips.shape[0], k=1)
    r = corr[:, i, j]
    bad = invalid.T[:, i] | invalid.T[:, j]
    r[bad] = np.nan
    return i.astype(np.int64), j.astype(np.int64), np.clip(r, -1.0, 1.0).astype(np.float32)


def row_median(a: NDArray[np.floating]) -> NDArray[np.float64]:
    """Per-row median, equal to ``np.median(a, axis=1)`` for finite ``a``.

    A sort is faster than numpy's selection here (SIMD sort); rows holding only float32
    values (the store's samples) are sorted in float32, which gives the same order
    statistics at half the cost.
    """
    n = a.shape[1]
    if a.dtype == np.float32:
        srt = np.sort(a, axis=1)
    else:
        a32 = a.astype(np.float32)
        srt = np.sort(a32 if np.array_equal(a32, a) else a, axis=1)
        del a32
    lo = srt[:, (n - 1) // 2].astype(np.float64)
    hi = srt[:, n // 2].astype(np.float64)
    return (lo + hi) / 2.0


def detector_input(data: NDArray[np.floating]) -> tuple[NDArray[np.floating],
                                                        NDArray[np.bool_]]:
    """A block as the spike and HFO detectors filter it, and which channels are usable.

    A channel with any non-finite sample is zeroed (so it cannot poison the vectorised
    filters of the others) and marked unusable. Every channel's offset is subtracted, so
    the zero padding of a resampler or an FFT convolution adds no step at the block's ends;
    the band-passes remove DC anyway, so the median of every 16th sample is offset enough.
    The result keeps ``data``'s dtype.
    """
    usable = np.isfinite(data).all(axis=1)
    if not usable.all():
        data = np.where(usable[:, None], data, 0.0)
    return data - row_median(data[:, ::16])[:, None].astype(data.dtype), usable
