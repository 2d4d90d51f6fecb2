"""Pure array functions behind the feature sets: no I/O, vectorised across channels and clips.

Every function takes ``clips`` of shape ``(n_channels, n_clips, n_samples)`` (microvolts) and
returns arrays with the same two leading axes. A clip whose samples include NaN, or that is
flat (sd below :data:`FLAT_SD_UV`), yields NaN features; :func:`clip_validity` says which, so tables can
flag them instead of storing silent zeros.
"""

from __future__ import annotations

import warnings

import numpy as np
import pywt
from numpy.typing import NDArray
from scipy import stats

#: Clinical bands (Hz). Ripple and fast ripple follow Staba et al.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
    "gamma": (30.0, 80.0), "ripple": (80.0, 250.0), "fast_ripple": (250.0, 500.0),
}
_EPS = 1e-12


def to_clips(block: NDArray, clip_samples: int) -> NDArray:
    """``(n_channels, n_clips * clip_samples)`` -> ``(n_channels, n_clips, clip_samples)``."""
    n_ch, n = block.shape
    n_clips = n // clip_samples
    return block[:, : n_clips * clip_samples].reshape(n_ch, n_clips, clip_samples)


#: A clip whose standard deviation is below this (microvolts) is flat: far below any recorded
#: physiology or amplifier noise, above the float noise a notch leaves on a constant input.
FLAT_SD_UV = 0.1


def clip_validity(clips: NDArray) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(has_nan, flat)`` flags, each ``(n_channels, n_clips)``."""
    has_nan = np.isnan(clips).any(axis=-1)
    with np.errstate(invalid="ignore"):
        flat = ~has_nan & (np.nanstd(clips, axis=-1) < FLAT_SD_UV)
    return has_nan, flat


def _invalid_mask(clips: NDArray) -> NDArray[np.bool_]:
    has_nan, flat = clip_validity(clips)
    return has_nan | flat


def log_amplitude_spectrum(clips: NDArray, sfreq: float, *, resolution_hz: float = 0.2,
                           fmax: float | None = None) -> NDArray[np.float32]:
    """Log10 amplitude of the rFFT, bins ``resolution_hz .. fmax`` (DC dropped).

    A clip is cut into segments of ``sfreq / resolution_hz`` samples whose amplitude spectra
    are averaged (one segment for a 5-s clip at 0.2 Hz: 2500 bins up to 500 Hz at 1 kHz).

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
    amp = np.abs(np.fft.rfft(seg, axis=-1)).mean(axis=2)
    top = n_fft // 2 if fmax is None else int(np.floor(fmax / resolution_hz))
    out = np.log10(amp[..., 1: top + 1] + _EPS).astype(np.float32)
    out[_invalid_mask(clips)] = np.nan
    return out


def band_powers(clips: NDArray, sfreq: float, *, bands: dict[str, tuple[float, float]] | None
                = None, max_freq: float | None = None) -> dict[str, NDArray[np.float64]]:
    """Absolute band powers (uV^2, from the periodogram), line length, variance, skewness and
    kurtosis, each ``(n_channels, n_clips)``.

    Bands above ``max_freq`` (the recording's bandwidth: half the lower of source and store
    rates) are NaN: a band the source never recorded is missing, not zero.
    """
    bands = bands or BANDS
    x = clips.astype(np.float64)
    n = x.shape[-1]
    centred = x - x.mean(axis=-1, keepdims=True)
    spec = np.abs(np.fft.rfft(centred, axis=-1)) ** 2 / (sfreq * n)
    spec[..., 1:-1] *= 2.0  # one-sided
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    df = freqs[1] - freqs[0]
    limit = min(0.5 * sfreq, max_freq if max_freq is not None else np.inf)
    invalid = _invalid_mask(clips)
    out: dict[str, NDArray[np.float64]] = {}
    for name, (lo, hi) in bands.items():
        sel = (freqs >= lo) & (freqs < hi)
        value = spec[..., sel].sum(axis=-1) * df
        if hi > limit + 1e-9:
            value = np.full_like(value, np.nan)
        out[name] = value
    out["line_length"] = np.abs(np.diff(x, axis=-1)).mean(axis=-1)
    out["variance"] = x.var(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # flat clips warn about precision loss; they are set to NaN just below
        warnings.simplefilter("ignore", RuntimeWarning)
        out["skewness"] = stats.skew(x, axis=-1)
        out["kurtosis"] = stats.kurtosis(x, axis=-1)
    for value in out.values():
        value[invalid] = np.nan
    return out


def wavelet_packet_energies(clips: NDArray, *, wavelet: str = "db4", level: int = 5
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wavelet-packet log energies and relative energies of the ``2**level`` leaves.

    Equal to ``pywt.WaveletPacket(x, wavelet, mode="symmetric", maxlevel=level)
    .get_level(level, order="freq")`` per clip, computed for all channels and clips at once
    (each level is one ``pywt.dwt`` over the stacked nodes).

    Returns
    -------
    log_energy, relative_energy : arrays of shape (n_channels, n_clips, 2**level)
        Leaves ordered from low to high frequency.
    """
    nodes = [clips.astype(np.float64)]
    paths = [""]
    for _ in range(level):
        stacked = np.stack(nodes, axis=0)
        approx, detail = pywt.dwt(stacked, wavelet, mode="symmetric", axis=-1)
        nodes = [a for pair in zip(approx, detail) for a in pair]
        paths = [p + c for p in paths for c in "ad"]
    freq_order = _gray_order(level)
    index = {p: i for i, p in enumerate(paths)}
    energy = np.stack([np.sum(nodes[index[p]] ** 2, axis=-1) for p in freq_order], axis=-1)
    log_energy = np.log(energy + _EPS)
    relative = energy / (energy.sum(axis=-1, keepdims=True) + _EPS)
    invalid = _invalid_mask(clips)
    log_energy[invalid] = np.nan
    relative[invalid] = np.nan
    return log_energy, relative


def _gray_order(level: int) -> list[str]:
    """Node paths of a wavelet-packet level in frequency order (the Gray code pywt uses)."""
    graycode = ["a", "d"]
    for _ in range(level - 1):
        graycode = ["a" + p for p in graycode] + ["d" + p for p in graycode[::-1]]
    return graycode


def correlation_upper(clips: NDArray) -> tuple[NDArray[np.int64], NDArray[np.int64],
                                               NDArray[np.float32]]:
    """Pearson correlation between channels per clip, upper triangle.

    Returns
    -------
    i, j : arrays of shape (n_pairs,)
        Channel indices with ``i < j``.
    r : array of shape (n_clips, n_pairs), float32
        NaN for a pair where either clip is NaN or flat.
    """
    x = clips.astype(np.float64)
    centred = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt((centred ** 2).sum(axis=-1, keepdims=True))
    invalid = _invalid_mask(clips)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = centred / norm
    z[invalid] = 0.0
    zt = np.ascontiguousarray(z.transpose(1, 0, 2))  # (n_clips, n_ch, n_samples)
    corr = zt @ zt.transpose(0, 2, 1)  # (n_clips, n_ch, n_ch), one BLAS call per clip
    i, j = np.triu_indices(clips.shape[0], k=1)
    r = corr[:, i, j]
    bad = invalid.T[:, i] | invalid.T[:, j]
    r[bad] = np.nan
    return i.astype(np.int64), j.astype(np.int64), np.clip(r, -1.0, 1.0).astype(np.float32)
