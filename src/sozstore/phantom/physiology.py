"""Synthetic SEEG physiology as pure array functions (no I/O).

A recording is described by a :class:`SignalSpec` (channel layout, background gains,
planted transients, an optional seizure, mains and bad-channel settings) and rendered
block by block by :class:`SignalSimulator`, which carries the filter state of the
aperiodic background across blocks so that memory stays bounded for any duration.

Physiology, in order of rendering:

* **Background**: power-law ("1/f") noise made by filtering white noise with a cascade of
  pole/zero pairs (:func:`background_spectrum`) plus a small white floor. Channels are
  linear mixtures of latent sources — one global, one per electrode shaft, one per contact
  with its neighbours sharing a part — so adjacent contacts correlate (~0.7) and the
  correlation decays along the shaft (:func:`shaft_mixing`).
* **Seizure** (:class:`SeizureSpec`): in onset-zone contacts, either background
  attenuation plus low-voltage fast activity (a down-chirp, ~100 -> 30 Hz) or a
  hypersynchronous onset (periodic high-amplitude spikes at 1-2 Hz), then a rhythmic
  spike-and-wave discharge whose frequency slows from ~8 to ~3 Hz, recruiting other
  contacts after per-channel delays with small propagation lags, ending at the offset and
  followed by post-ictal suppression.
* **Transients** (:class:`TransientTable`): interictal spikes (a sharp component and an
  after-going slow wave), benign sharp transients (no slow wave), ripples and fast
  ripples (Hann-windowed bursts), sleep spindles (11-16 Hz Hann-windowed bursts),
  electrode pops, movement artifacts on all channels, QRS complexes on ECG channels (and
  leaked into contacts) and trigger pulses on an EVENT channel.
* **Mains** at the site's frequency plus one harmonic, common phase on all channels.
* **Reference**: ideal, an active reference contact (one 1/f signal subtracted from every
  contact) or the common average of the good contacts.
* **Bad channels**: flat (constant) and noisy (large white noise, strong mains).

All amplitudes are in microvolts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.signal as ss
from scipy.special import i0e

__all__ = [
    "KIND_CODES",
    "REFERENCES",
    "BackgroundGenerator",
    "BackgroundSpectrum",
    "SeizureSpec",
    "SignalSimulator",
    "SignalSpec",
    "TransientTable",
    "background_spectrum",
    "band_rms_fraction",
    "hfo_waveform",
    "physical_bounds",
    "poisson_times",
    "shaft_mixing",
    "sharp_transient_waveform",
    "spike_waveform",
]

#: Integer codes of the transient kinds in a :class:`TransientTable`.
KIND_CODES: dict[str, int] = {
    "spike": 0,
    "ripple": 1,
    "fast_ripple": 2,
    "pop": 3,
    "movement": 4,
    "qrs": 5,
    "pulse": 6,
    "sharp": 7,
    "spindle": 8,
}

#: Reference schemes of :attr:`SignalSpec.reference`.
REFERENCES = ("none", "common", "average")

# ----------------------------------------------------------------------------------------
# aperiodic background
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackgroundSpectrum:
    """A unit-variance power-law noise filter.

    Attributes
    ----------
    sos : numpy.ndarray, shape (n_sections, 6)
        Second-order sections of the power-law filter, scaled with ``scale`` already.
    floor : float
        Weight of the white floor added to the filtered noise (same white input), which
        models amplifier noise and keeps the high-frequency spectrum from vanishing.
    scale : float
        Overall factor that makes ``sosfilt(sos, w) + floor * w`` unit-variance for
        unit-variance white ``w``.
    sfreq : float
        Sampling rate the filter was designed for.
    """

    sos: np.ndarray
    floor: float
    scale: float
    sfreq: float


def background_spectrum(
    sfreq: float,
    *,
    exponent: float = 1.8,
    f_min: float = 0.5,
    ratio: float = 4.0,
    floor: float = 0.04,
) -> BackgroundSpectrum:
    """Design a filter that turns white noise into 1/f**exponent noise.

    The analog prototype has real poles spaced by ``ratio`` from ``f_min`` up to 0.4 x
    sfreq, each followed by a zero at ``pole * ratio**(exponent / 2)``: every pole/zero
    pair lowers the power by ``exponent * 10 * log10(ratio)`` dB over one spacing, which
    averages to the requested slope. It is mapped to digital with the bilinear transform.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    exponent : float
        Spectral exponent, ``0 < exponent <= 2``.
    f_min : float
        Corner below which the spectrum is flat (avoids infinite low-frequency power).
    ratio : float
        Frequency ratio between successive poles (4 keeps the slope within ~1 dB).
    floor : float
        Relative weight of the white floor.

    Returns
    -------
    BackgroundSpectrum
        The normalised filter.
    """
    if not 0.0 < exponent <= 2.0:
        raise ValueError("exponent must be in (0, 2]")
    f_top = 0.4 * sfreq
    poles = []
    f = f_min
    while f < f_top:
        poles.append(f)
        f *= ratio
    zeros = [p * ratio ** (exponent / 2.0) for p in poles]
    # a zero above the usable band does nothing but add warping; drop it
    zeros = [z for z in zeros if z < 0.45 * sfreq]
    z_a = -2.0 * np.pi * np.asarray(zeros)
    p_a = -2.0 * np.pi * np.asarray(poles)
    k_a = float(np.prod(-p_a) / np.prod(-z_a)) if len(z_a) else float(np.prod(-p_a))
    z_d, p_d, k_d = ss.bilinear_zpk(z_a, p_a, k_a, fs=sfreq)
    sos = ss.zpk2sos(z_d, p_d, k_d)
    # impulse response energy -> unit variance of the filter alone, then of
    # (filter + floor) so that ``floor`` is relative to the normalised power-law part
    n_imp = int(max(20.0 / f_min, 2.0) * sfreq)
    impulse = np.zeros(n_imp)
    impulse[0] = 1.0
    h = ss.sosfilt(sos, impulse)
    s1 = 1.0 / float(np.sqrt(np.sum(h**2)))
    h *= s1
    h[0] += floor
    s2 = 1.0 / float(np.sqrt(np.sum(h**2)))
    sos = sos.copy()
    sos[0, :3] *= s1 * s2
    return BackgroundSpectrum(sos=sos, floor=floor * s2, scale=s1 * s2, sfreq=float(sfreq))


def band_rms_fraction(spectrum: BackgroundSpectrum, lo: float, hi: float) -> float:
    """Return the RMS of unit-variance background noise within a frequency band.

    Parameters
    ----------
    spectrum : BackgroundSpectrum
        The background filter.
    lo, hi : float
        Band edges in Hz (clipped to Nyquist).

    Returns
    -------
    float
        ``sqrt(band power / total power)``; multiply by a channel's background SD to get
        the band RMS in microvolts (used to scale HFOs to a detectable size).
    """
    nyq = spectrum.sfreq / 2.0
    hi = min(hi, nyq)
    if hi <= lo:
        return 0.0
    freqs = np.linspace(lo, hi, 512)
    _, resp = ss.sosfreqz(spectrum.sos, worN=freqs, fs=spectrum.sfreq)
    power = np.abs(resp + spectrum.floor) ** 2
    # one-sided PSD of unit white noise filtered by H is |H|^2 * 2 / fs per Hz
    band = np.trapezoid(power, freqs) * 2.0 / spectrum.sfreq
    return float(np.sqrt(band))


def shaft_mixing(
    electrode: np.ndarray,
    position: np.ndarray,
    sigma: np.ndarray,
    *,
    global_weight: float = 0.2,
    shaft_weight: float = 0.5,
    local_weight: float = 0.8,
    neighbour_share: float = 0.5,
) -> np.ndarray:
    """Build the matrix that mixes latent noise sources into correlated channels.

    Latent sources are ordered ``[global, shaft_0 .. shaft_{E-1}, contact_0 .. contact_{C-1}]``
    (one contact latent per channel that belongs to a shaft). A channel is
    ``global_weight * G + shaft_weight * S_e + local_weight * (L_c + share * (L_prev + L_next))``
    normalised to unit variance and scaled by its ``sigma``; ``prev``/``next`` are the
    contacts at positions ``p - 1`` and ``p + 1`` of the same shaft.

    Parameters
    ----------
    electrode : numpy.ndarray of int, shape (n_channels,)
        Shaft index of each channel, ``-1`` for channels without background (ECG,
        EVENT, DC: rendered separately).
    position : numpy.ndarray of int, shape (n_channels,)
        Position along the shaft (contact number).
    sigma : numpy.ndarray of float, shape (n_channels,)
        Background SD of each channel in microvolts.
    global_weight, shaft_weight, local_weight, neighbour_share : float
        Mixing weights (see above).

    Returns
    -------
    numpy.ndarray, shape (n_channels, n_latents), float32
        The mixing matrix; rows of channels without background are zero.
    """
    electrode = np.asarray(electrode, dtype=np.int64)
    position = np.asarray(position, dtype=np.int64)
    n_ch = electrode.size
    shafts = sorted({int(e) for e in electrode if e >= 0})
    shaft_col = {e: 1 + i for i, e in enumerate(shafts)}
    members = np.flatnonzero(electrode >= 0)
    contact_col = {int(c): 1 + len(shafts) + i for i, c in enumerate(members)}
    n_lat = 1 + len(shafts) + len(members)
    mix = np.zeros((n_ch, n_lat), dtype=np.float64)
    lookup = {(int(electrode[c]), int(position[c])): int(c) for c in members}
    for c in members:
        e, p = int(electrode[c]), int(position[c])
        mix[c, 0] = global_weight
        mix[c, shaft_col[e]] = shaft_weight
        mix[c, contact_col[int(c)]] = local_weight
        for q in (p - 1, p + 1):
            other = lookup.get((e, q))
            if other is not None:
                mix[c, contact_col[other]] = local_weight * neighbour_share
        mix[c] *= float(sigma[c]) / np.linalg.norm(mix[c])
    return mix.astype(np.float32)


class BackgroundGenerator:
    """Stateful generator of correlated power-law background, block by block.

    Parameters
    ----------
    spectrum : BackgroundSpectrum
        The noise filter.
    mixing : numpy.ndarray, shape (n_channels, n_latents)
        Output of :func:`shaft_mixing`.
    rng : numpy.random.Generator
        Source of the white noise.
    warmup_s : float
        Seconds of noise pushed through the filters before the first block, so the
        recording starts in the stationary regime instead of ramping up from zero state.
    """

    def __init__(
        self,
        spectrum: BackgroundSpectrum,
        mixing: np.ndarray,
        rng: np.random.Generator,
        *,
        warmup_s: float = 5.0,
    ) -> None:
        self._sos = spectrum.sos.astype(np.float32)
        self._floor = np.float32(spectrum.floor)
        self._rng = rng
        mixing = np.asarray(mixing, dtype=np.float32)
        self._n_lat = mixing.shape[1]
        # The mixing matrix has at most ~5 non-zeros per row. Applying it as a fixed
        # sequence of gathers and multiply-adds (not a BLAS matmul, whose summation order
        # depends on the thread count) keeps the output bit-identical in any process.
        nonzero = [np.flatnonzero(row) for row in mixing]
        width = max(1, max((len(nz) for nz in nonzero), default=1))
        self._cols = np.zeros((mixing.shape[0], width), dtype=np.int64)
        self._weights = np.zeros((mixing.shape[0], width), dtype=np.float32)
        for r, nz in enumerate(nonzero):
            self._cols[r, : len(nz)] = nz
            self._weights[r, : len(nz)] = mixing[r, nz]
        self._zi = np.zeros((self._sos.shape[0], self._n_lat, 2), dtype=np.float32)
        if warmup_s > 0:
            self._latents(int(warmup_s * spectrum.sfreq))

    def _latents(self, n: int) -> np.ndarray:
        # uniform white noise (3x cheaper than Gaussian); the low-pass filter sums many
        # samples so the output is Gaussian to a very good approximation.
        w = self._rng.random((self._n_lat, n), dtype=np.float32)
        w -= np.float32(0.5)
        w *= np.float32(np.sqrt(12.0))
        y, self._zi = ss.sosfilt(self._sos, w, axis=-1, zi=self._zi)
        y += self._floor * w
        return y

    def next(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples of every channel.

        Parameters
        ----------
        n : int
            Number of samples.

        Returns
        -------
        numpy.ndarray, shape (n_channels, n), float32
            Background in microvolts.
        """
        latents = self._latents(n)
        out = latents[self._cols[:, 0]]
        out *= self._weights[:, 0:1]
        term = np.empty_like(out)
        for k in range(1, self._cols.shape[1]):
            np.take(latents, self._cols[:, k], axis=0, out=term)
            term *= self._weights[:, k : k + 1]
            out += term
        return out


# ----------------------------------------------------------------------------------------
# transients
# ----------------------------------------------------------------------------------------


def spike_waveform(t: np.ndarray, amplitude: float, width: float) -> np.ndarray:
    """Interictal spike: a sharp asymmetric peak at ``t = 0`` and an after-going slow wave.

    Parameters
    ----------
    t : numpy.ndarray
        Time relative to the spike peak, in seconds.
    amplitude : float
        Signed peak amplitude (negative for surface-negative spikes).
    width : float
        Duration of the sharp component (20-70 ms); the rise is steeper than the fall.

    Returns
    -------
    numpy.ndarray
        The waveform at ``t``.
    """
    s_rise, s_fall = width / 8.0, width / 5.0
    sharp = np.where(t < 0, np.exp(-0.5 * (t / s_rise) ** 2), np.exp(-0.5 * (t / s_fall) ** 2))
    delay = 0.6 * width + 0.1
    slow = -0.35 * np.exp(-0.5 * ((t - delay) / 0.06) ** 2)
    return amplitude * (sharp + slow)


def sharp_transient_waveform(t: np.ndarray, amplitude: float, width: float) -> np.ndarray:
    """Benign sharp transient: a symmetric sharp peak flanked by shallow opposite dips.

    A Ricker (Mexican-hat) wavelet: as sharp as a spike in the 10-60 Hz band that spike
    detectors watch, but symmetric and without the after-going slow wave of an
    epileptiform spike (small sharp spikes, wicket-like waves, electrode micro-artifacts).

    Parameters
    ----------
    t : numpy.ndarray
        Time relative to the peak, in seconds.
    amplitude : float
        Signed peak amplitude.
    width : float
        Duration of the central peak (between its zero crossings), in seconds.

    Returns
    -------
    numpy.ndarray
        The waveform at ``t``.
    """
    u = (t / (width / 2.0)) ** 2  # zero crossings of (1 - u) at t = +-width/2
    return amplitude * (1.0 - u) * np.exp(-0.5 * u)


def hfo_waveform(
    t: np.ndarray, amplitude: float, freq: float, duration: float, phase: float
) -> np.ndarray:
    """High-frequency oscillation: a Hann-windowed sinusoid centred at ``t = 0``.

    Parameters
    ----------
    t : numpy.ndarray
        Time relative to the burst centre, in seconds.
    amplitude : float
        Peak amplitude.
    freq : float
        Oscillation frequency (ripples 80-250 Hz, fast ripples 250-500 Hz).
    duration : float
        Full burst duration (window length) in seconds.
    phase : float
        Carrier phase at the centre.

    Returns
    -------
    numpy.ndarray
        The waveform at ``t`` (zero outside the window).
    """
    window = np.where(np.abs(t) < duration / 2, 0.5 * (1 + np.cos(2 * np.pi * t / duration)), 0.0)
    return amplitude * window * np.sin(2 * np.pi * freq * t + phase)


def _qrs_waveform(t: np.ndarray, amplitude: float) -> np.ndarray:
    """One PQRST complex centred on the R peak."""
    comps = (
        (-0.16, 0.03, 0.12),
        (-0.03, 0.008, -0.15),
        (0.0, 0.012, 1.0),
        (0.03, 0.01, -0.25),
        (0.25, 0.05, 0.3),
    )
    out = np.zeros_like(t)
    for centre, width, gain in comps:
        out += gain * np.exp(-0.5 * ((t - centre) / width) ** 2)
    return amplitude * out


def _render_one(
    kind: int, t: np.ndarray, amp: float, p1: float, p2: float, p3: float
) -> np.ndarray:
    """Evaluate one transient of the given kind at relative times ``t``."""
    if kind == 0:
        return spike_waveform(t, amp, p1)
    if kind in (1, 2, 8):  # ripples, fast ripples and spindles are windowed sinusoids
        return hfo_waveform(t, amp, p1, p2, p3)
    if kind == 3:  # electrode pop: a jump then exponential recovery
        return np.where(t >= 0, amp * np.exp(-t / p1), 0.0)
    if kind == 4:  # movement: slow deflection with a superimposed 6 Hz wobble
        return amp * np.exp(-0.5 * (t / p1) ** 2) * (1 + 0.3 * np.sin(2 * np.pi * 6.0 * t))
    if kind == 5:
        return _qrs_waveform(t, amp)
    if kind == 6:  # trigger pulse on an EVENT channel
        return np.where((t >= 0) & (t < p1), amp, 0.0)
    if kind == 7:
        return sharp_transient_waveform(t, amp, p1)
    raise ValueError(f"unknown transient kind {kind}")


def _support(kind: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time support ``[t + lo, t + hi]`` of each transient, relative to its time."""
    lo = np.zeros(kind.shape, dtype=np.float64)
    hi = np.zeros(kind.shape, dtype=np.float64)
    m = kind == 0
    lo[m], hi[m] = -p1[m] / 2.0, 0.6 * p1[m] + 0.1 + 0.25
    m = (kind == 1) | (kind == 2) | (kind == 8)
    lo[m], hi[m] = -p2[m] / 2.0, p2[m] / 2.0
    m = kind == 3
    lo[m], hi[m] = 0.0, 6.0 * p1[m]
    m = kind == 4
    lo[m], hi[m] = -3.5 * p1[m], 3.5 * p1[m]
    m = kind == 5
    lo[m], hi[m] = -0.3, 0.5
    m = kind == 6
    lo[m], hi[m] = 0.0, p1[m]
    m = kind == 7  # the Ricker wavelet is below 1e-4 of its peak beyond 4.3 half-widths
    lo[m], hi[m] = -2.2 * p1[m], 2.2 * p1[m]
    return lo, hi


@dataclass(frozen=True)
class TransientTable:
    """Planted transient events of one recording (struct of arrays, sorted by start).

    Attributes
    ----------
    channel : numpy.ndarray of int
        Channel row; ``-1`` means every background channel (movement artifacts), with the
        per-channel gain taken from ``gains[p3]``.
    time : numpy.ndarray of float
        Event time in seconds from the recording start (spike peak, HFO centre, pop
        onset, R peak, ...).
    kind : numpy.ndarray of int
        Codes from :data:`KIND_CODES`.
    amp : numpy.ndarray of float
        Signed amplitude in microvolts.
    p1, p2, p3 : numpy.ndarray of float
        Kind-specific parameters: spike or sharp-transient width; HFO or spindle
        frequency, duration, phase; pop time constant; movement width and gain-row index;
        pulse length.
    gains : numpy.ndarray, shape (n_movement, n_channels)
        Per-channel gains of the all-channel events.
    """

    channel: np.ndarray
    time: np.ndarray
    kind: np.ndarray
    amp: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    p3: np.ndarray
    gains: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stop: np.ndarray = field(default_factory=lambda: np.zeros(0))
    max_len: float = 0.0

    @staticmethod
    def build(
        rows: Mapping[str, Sequence[float] | np.ndarray], gains: np.ndarray | None = None
    ) -> TransientTable:
        """Assemble a sorted table from column lists.

        Parameters
        ----------
        rows : dict
            Columns ``channel, time, kind, amp, p1, p2, p3`` of equal length.
        gains : numpy.ndarray, optional
            Gain rows for all-channel events.

        Returns
        -------
        TransientTable
            The table sorted by support start.
        """
        cols = {
            k: np.asarray(rows.get(k, []), dtype=np.float64)
            for k in ("channel", "time", "kind", "amp", "p1", "p2", "p3")
        }
        lo, hi = _support(cols["kind"].astype(np.int64), cols["p1"], cols["p2"])
        order = np.argsort(cols["time"] + lo, kind="stable")
        # support bounds are cached: blocks only search them, never recompute them
        start = (cols["time"] + lo)[order]
        stop = (cols["time"] + hi)[order]
        return TransientTable(
            channel=cols["channel"][order].astype(np.int64),
            time=cols["time"][order],
            kind=cols["kind"][order].astype(np.int64),
            amp=cols["amp"][order],
            p1=cols["p1"][order],
            p2=cols["p2"][order],
            p3=cols["p3"][order],
            gains=np.zeros((0, 0), dtype=np.float32) if gains is None else gains,
            start=start,
            stop=stop,
            max_len=float(np.max(stop - start)) if start.size else 0.0,
        )

    def __len__(self) -> int:
        """Number of events."""
        return int(self.time.size)


def render_transients(
    out: np.ndarray, table: TransientTable, start: int, sfreq: float, background_rows: np.ndarray
) -> None:
    """Add the transients that overlap a block to it, in place.

    Parameters
    ----------
    out : numpy.ndarray, shape (n_channels, n)
        The block, starting at sample ``start``.
    table : TransientTable
        Events of the recording.
    start : int
        Index of the block's first sample.
    sfreq : float
        Sampling rate.
    background_rows : numpy.ndarray of int
        Rows affected by all-channel events.
    """
    if len(table) == 0:
        return
    n = out.shape[1]
    t_a, t_b = start / sfreq, (start + n) / sfreq
    i0 = int(np.searchsorted(table.start, t_a - table.max_len, side="left"))
    i1 = int(np.searchsorted(table.start, t_b, side="right"))
    for i in range(i0, i1):
        if table.stop[i] <= t_a:
            continue
        s_a = max(start, int(np.ceil(table.start[i] * sfreq)))
        s_b = min(start + n, int(np.floor(table.stop[i] * sfreq)) + 1)
        if s_b <= s_a:
            continue
        t = np.arange(s_a, s_b) / sfreq - table.time[i]
        wave = _render_one(
            int(table.kind[i]), t, table.amp[i], table.p1[i], table.p2[i], table.p3[i]
        )
        ch = int(table.channel[i])
        if ch >= 0:
            out[ch, s_a - start : s_b - start] += wave.astype(np.float32)
        else:
            gains = table.gains[int(table.p3[i])][background_rows]
            out[background_rows, s_a - start : s_b - start] += np.outer(gains, wave).astype(
                np.float32
            )


def poisson_times(
    rng: np.random.Generator,
    rate_per_min: float,
    t_start: float,
    t_stop: float,
    *,
    min_gap: float = 0.0,
    exclude: list[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Draw event times of a Poisson process with a refractory gap.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    rate_per_min : float
        Mean rate in events per minute.
    t_start, t_stop : float
        Window in seconds.
    min_gap : float
        Events closer than this to the previous kept event are dropped (keeps planted
        events separable, as a detector's merge window would merge them anyway).
    exclude : list of (float, float), optional
        Intervals where no event is planted (e.g. the seizure).

    Returns
    -------
    numpy.ndarray
        Sorted event times in seconds.
    """
    span = max(t_stop - t_start, 0.0)
    n = rng.poisson(rate_per_min * span / 60.0)
    times = np.sort(rng.uniform(t_start, t_stop, size=n))
    if exclude:
        keep = np.ones(times.size, dtype=bool)
        for a, b in exclude:
            keep &= ~((times >= a) & (times <= b))
        times = times[keep]
    if min_gap > 0 and times.size > 1:
        kept = [times[0]]
        for x in times[1:]:
            if x - kept[-1] >= min_gap:
                kept.append(x)
        times = np.asarray(kept)
    return times


# ----------------------------------------------------------------------------------------
# seizure
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeizureSpec:
    """One electrographic seizure.

    Attributes
    ----------
    onset_s, offset_s : float
        Electrographic onset and offset (generator truth).
    recruit_s : numpy.ndarray, shape (n_channels,)
        Time each channel joins the seizure (``nan``: never recruited).
    lvfa : numpy.ndarray of bool
        Channels that start with low-voltage fast activity (the onset zone).
    amplitude : numpy.ndarray
        Peak amplitude of the rhythmic discharge per channel (microvolts).
    lvfa_amplitude : numpy.ndarray
        Peak amplitude of the fast activity per channel (microvolts).
    lag_s : numpy.ndarray
        Propagation lag of the rhythm per channel (leaders have the smallest lags).
    polarity : numpy.ndarray
        +1 or -1 per channel.
    lvfa_phase : numpy.ndarray
        Random initial phase of the fast activity per channel.
    lvfa_duration_s : float
        Duration of the fast-activity phase.
    lvfa_f_hi, lvfa_f_lo : float
        Start and end frequency of the fast-activity chirp.
    rhythm_f_start, rhythm_f_end, rhythm_tau : float
        The rhythm's frequency decays as ``f_end + (f_start - f_end) * exp(-u / tau)``.
    postictal_s : float
        Time constant of the post-ictal suppression.
    onset_pattern : {"lvfa", "hypersync"}
        Onset of the onset-zone channels: low-voltage fast activity after an
        electrodecrement, or periodic high-amplitude spikes at ``hyper_f`` Hz (then
        ``lvfa_amplitude`` is the spikes' amplitude) without electrodecrement.
    hyper_f : float
        Rate of the hypersynchronous onset spikes, in Hz.
    """

    onset_s: float
    offset_s: float
    recruit_s: np.ndarray
    lvfa: np.ndarray
    amplitude: np.ndarray
    lvfa_amplitude: np.ndarray
    lag_s: np.ndarray
    polarity: np.ndarray
    lvfa_phase: np.ndarray
    lvfa_duration_s: float
    lvfa_f_hi: float
    lvfa_f_lo: float
    rhythm_f_start: float
    rhythm_f_end: float
    rhythm_tau: float
    postictal_s: float
    onset_pattern: str = "lvfa"
    hyper_f: float = 1.5


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def seizure_block(
    spec: SeizureSpec, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Evaluate the seizure over one block.

    Parameters
    ----------
    spec : SeizureSpec
        The seizure.
    t : numpy.ndarray, shape (n,)
        Sample times of the block in seconds (increasing).

    Returns
    -------
    tuple of (rows, gain, add) or None
        ``rows`` are the recruited channels, ``gain`` (len(rows), n) multiplies their
        background and ``add`` (len(rows), n) is added afterwards. ``None`` when the block
        does not overlap the seizure or its post-ictal period.
    """
    rows = np.flatnonzero(np.isfinite(spec.recruit_s))
    if rows.size == 0:
        return None
    end = spec.offset_s + 6.0 * spec.postictal_s
    if t[-1] < float(np.min(spec.recruit_s[rows])) or t[0] > end:
        return None
    n = t.size
    gain = np.ones((rows.size, n), dtype=np.float32)
    add = np.zeros((rows.size, n), dtype=np.float32)
    lvfa_all = spec.lvfa[rows]
    i_off = int(np.searchsorted(t, spec.offset_s, side="left"))

    # post-ictal suppression after the offset (only the gain is needed there)
    if i_off < n:
        depth = np.where(lvfa_all, 0.7, 0.5)[:, None]
        gain[:, i_off:] = 1.0 - depth * np.exp(
            -(t[None, i_off:] - spec.offset_s) / spec.postictal_s
        )
    if i_off == 0:
        return rows, gain, add

    # ictal part: only rows already recruited within this block
    ta = t[:i_off]
    sel = np.flatnonzero(spec.recruit_s[rows] <= ta[-1])
    if sel.size == 0:
        return rows, gain, add
    r = rows[sel]
    rec = spec.recruit_s[r][:, None]
    lvfa = spec.lvfa[r][:, None]
    tt = ta[None, :]
    tau = tt - rec
    active = tau >= 0
    big_l = spec.lvfa_duration_s

    # background gain: electrodecrement at onset (deep in the onset zone), partial
    # recovery during the rhythmic phase; a hypersynchronous onset has no decrement
    hyper = spec.onset_pattern == "hypersync"
    g_spread = 1.0 - 0.2 * _smoothstep(tau / 2.0)
    if hyper:
        g_lvfa = g_spread
    else:
        g_lvfa = 1.0 - 0.65 * _smoothstep(tau / 0.5) + 0.25 * _smoothstep((tau - big_l) / 2.0)
    gain[sel, :i_off] = np.where(active, np.where(lvfa, g_lvfa, g_spread), 1.0)

    # low-voltage fast activity: a linear down-chirp fading at the chirp's end; or, for
    # a hypersynchronous onset, a train of sharp spikes with an after-going slow wave
    fast_rows = np.flatnonzero(spec.lvfa[r] & (spec.recruit_s[r] + big_l + 1.5 > ta[0]))
    if fast_rows.size and hyper:
        tf = tau[fast_rows]
        phase = 2 * np.pi * spec.hyper_f * tf
        # von Mises pulses, kappa 40: ~25 ms wide at 1.5 Hz, like an interictal spike
        sharp = np.exp(40.0 * (np.cos(phase) - 1.0))
        slow = np.exp(4.0 * (np.cos(phase - 0.9) - 1.0))
        env = _smoothstep(tf / 0.3) * (1.0 - _smoothstep((tf - big_l) / 1.5))
        train = spec.lvfa_amplitude[r[fast_rows]][:, None] * env * (sharp - 0.3 * slow)
        train *= spec.polarity[r[fast_rows]][:, None]
        add[sel[fast_rows], :i_off] += np.where(tf >= 0, train, 0.0).astype(np.float32)
    elif fast_rows.size:
        tf = tau[fast_rows]
        f_hi, f_lo = spec.lvfa_f_hi, spec.lvfa_f_lo
        tc = np.clip(tf, 0.0, big_l)
        phi = 2 * np.pi * (f_hi * tc - (f_hi - f_lo) * tc**2 / (2 * big_l))
        phi += 2 * np.pi * f_lo * np.maximum(tf - big_l, 0.0)
        phi += spec.lvfa_phase[r[fast_rows]][:, None]
        env = _smoothstep(tf / 0.5) * (1.0 - _smoothstep((tf - big_l) / 1.5))
        fast = spec.lvfa_amplitude[r[fast_rows]][:, None] * env * np.sin(phi)
        add[sel[fast_rows], :i_off] += np.where(tf >= 0, fast, 0.0).astype(np.float32)

    # rhythmic discharge: one oscillator for the network (frequency slowing down), seen
    # by each channel with its own propagation lag; von Mises pulses give the sharp spike
    # component, the sine the wave
    r0 = spec.recruit_s[r] + np.where(spec.lvfa[r], big_l, 0.0)
    rh = np.flatnonzero(r0 <= ta[-1])
    if rh.size:
        r0c = r0[rh][:, None]
        ramp = np.where(spec.lvfa[r[rh]], 2.0, 3.0)[:, None]
        dur = max(spec.offset_s - spec.onset_s, 1.0)
        progress = np.clip((tt - r0c) / np.maximum(spec.offset_s - r0c, 1.0), 0.0, 1.0)
        env = _smoothstep((tt - r0c) / ramp) * (0.5 + 0.5 * progress)
        env *= _smoothstep((spec.offset_s - tt) / 0.7)
        u = np.maximum(tt - spec.lag_s[r[rh]][:, None] - spec.onset_s, 0.0)
        f_s, f_e, big_t = spec.rhythm_f_start, spec.rhythm_f_end, spec.rhythm_tau
        big_phi = 2 * np.pi * (f_e * u + (f_s - f_e) * big_t * (1.0 - np.exp(-u / big_t)))
        kappa = 1.0 + 3.0 * np.clip((ta - spec.onset_s) / dur, 0.0, 1.0)[None, :]
        base = i0e(kappa)
        pulse = (np.exp(kappa * (np.cos(big_phi) - 1.0)) - base) / (1.0 - base)
        wave = 0.75 * pulse - 0.25 * np.sin(big_phi)
        rhythm = (spec.amplitude[r[rh]] * spec.polarity[r[rh]])[:, None] * env * wave
        add[sel[rh], :i_off] += np.where(tt >= r0c, rhythm, 0.0).astype(np.float32)
    return rows, gain, add


# ----------------------------------------------------------------------------------------
# whole recording
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalSpec:
    """Everything needed to synthesise one recording.

    Attributes
    ----------
    sfreq : float
        Sampling rate in Hz.
    n_samples : int
        Length of the recording.
    seed_words : tuple of int
        Seed of the white noise (the rest of the randomness is already planned).
    role : tuple of str
        Per channel: ``contact``, ``scalp``, ``ecg``, ``event`` or ``dc``.
    electrode, position : numpy.ndarray of int
        Shaft index (``-1`` for channels without background) and position along it.
    sigma : numpy.ndarray
        Background SD per channel (microvolts).
    flat, noisy : numpy.ndarray of bool
        Bad channels.
    mains_hz : float
        Mains frequency.
    mains_amp : numpy.ndarray, shape (n_channels, 2)
        Amplitude of the fundamental and of the harmonic per channel.
    transients : TransientTable
        Planted events.
    seizure : SeizureSpec or None
        The seizure, for ictal runs.
    dc : numpy.ndarray, shape (n_channels, 4)
        ``offset, amplitude, frequency, phase`` of the slow drift on DC channels.
    exponent : float
        Background spectral exponent.
    reference : {"none", "common", "average"}
        Reference of the contact channels: ideal; an active reference contact (1/f noise
        of SD ``reference_uv``, the same on every contact, subtracted); or the common
        average of the good contacts (flat and noisy ones excluded), subtracted.
    reference_uv : float
        SD of the reference contact's signal (``common`` only).
    """

    sfreq: float
    n_samples: int
    seed_words: tuple[int, ...]
    role: tuple[str, ...]
    electrode: np.ndarray
    position: np.ndarray
    sigma: np.ndarray
    flat: np.ndarray
    noisy: np.ndarray
    mains_hz: float
    mains_amp: np.ndarray
    transients: TransientTable
    seizure: SeizureSpec | None
    dc: np.ndarray
    exponent: float = 1.8
    reference: str = "none"
    reference_uv: float = 0.0

    def __post_init__(self) -> None:
        """Reject an unknown reference scheme early (not in a worker process)."""
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.role)


def physical_bounds(spec: SignalSpec) -> np.ndarray:
    """Return a symmetric physical range per channel that will hold its signal.

    The bound adds up the worst cases of everything planted on a channel (background at
    6 SD, largest transient, seizure, mains, drift) and rounds up to two significant
    digits; writers clip the rare excursions beyond it.

    Parameters
    ----------
    spec : SignalSpec
        The recording.

    Returns
    -------
    numpy.ndarray, shape (n_channels,)
        Positive bounds in microvolts.
    """
    n = spec.n_channels
    bound = 6.0 * spec.sigma.astype(np.float64) * np.where(spec.noisy, 4.0, 1.0)
    bound += np.abs(spec.mains_amp).sum(axis=1)
    tr = spec.transients
    peak = np.zeros(n)
    if len(tr):
        single = tr.channel >= 0
        np.maximum.at(peak, tr.channel[single], np.abs(tr.amp[single]) * 1.4)
        moves = ~single & (tr.kind == KIND_CODES["movement"])
        if moves.any() and tr.gains.size:
            rows = np.unique(tr.p3[moves].astype(np.int64))
            worst = np.abs(tr.amp[moves]).max() * np.abs(tr.gains[rows]).max(axis=0)
            peak = np.maximum(peak, worst)
        # other all-channel events (ECG leaking into contacts): each with its own gain row
        for k in np.unique(tr.p3[~single & ~moves].astype(np.int64)):
            of_k = ~single & ~moves & (tr.p3 == k)
            peak += np.abs(tr.amp[of_k]).max() * np.abs(tr.gains[k]) * 1.4
    bound += peak
    if spec.seizure is not None:
        bound += np.nan_to_num(
            np.where(np.isfinite(spec.seizure.recruit_s), 1.0, 0.0)
            * (spec.seizure.amplitude + spec.seizure.lvfa_amplitude)
        )
    bound += np.abs(spec.dc[:, 0]) + np.abs(spec.dc[:, 1])
    contacts = np.asarray(spec.role) == "contact"
    if spec.reference == "common":
        bound[contacts] += 6.0 * spec.reference_uv
    elif spec.reference == "average":
        # |mean of x_i| <= mean of |x_i| <= mean of their bounds
        good = contacts & ~spec.flat & ~spec.noisy
        if good.any():
            bound[contacts] += float(np.mean(bound[good]))
    bound = np.maximum(bound, 50.0)
    mag = 10.0 ** np.floor(np.log10(bound) - 1.0)
    return np.ceil(bound / mag) * mag


class SignalSimulator:
    """Render a :class:`SignalSpec` block by block with bounded memory.

    Parameters
    ----------
    spec : SignalSpec
        The recording to synthesise.

    Notes
    -----
    The output for a given spec is deterministic; the white noise is drawn in the order
    of the blocks, so the same spec rendered with another block size gives a statistically
    identical but not bit-identical signal.
    """

    def __init__(self, spec: SignalSpec) -> None:
        self.spec = spec
        self.position = 0
        rng = np.random.default_rng(np.random.SeedSequence(list(spec.seed_words)))
        self._spectrum = background_spectrum(spec.sfreq, exponent=spec.exponent)
        mixing = shaft_mixing(spec.electrode, spec.position, spec.sigma)
        self._background = BackgroundGenerator(self._spectrum, mixing, rng)
        self._rng = rng
        role = np.asarray(spec.role)
        self._bg_rows = np.flatnonzero(np.asarray(spec.electrode) >= 0)
        self._dc_rows = np.flatnonzero(role == "dc")
        self._noisy_rows = np.flatnonzero(spec.noisy)
        self._flat_rows = np.flatnonzero(spec.flat)
        self._mains_amp = spec.mains_amp.astype(np.float32)
        contact = role == "contact"
        self._contact_rows = np.flatnonzero(contact)
        self._average_rows = np.flatnonzero(contact & ~spec.flat & ~spec.noisy)
        self._reference: BackgroundGenerator | None = None
        if spec.reference == "common":
            # its own noise stream: the contacts' background stays what it would be under
            # an ideal reference
            ref_rng = np.random.default_rng(
                np.random.SeedSequence([*spec.seed_words, 0x52454600])
            )
            gain = np.full((1, 1), spec.reference_uv, dtype=np.float32)
            self._reference = BackgroundGenerator(self._spectrum, gain, ref_rng)

    @property
    def n_samples(self) -> int:
        """Total number of samples of the recording."""
        return self.spec.n_samples

    def render(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples (fewer at the end of the recording).

        Parameters
        ----------
        n : int
            Requested block length.

        Returns
        -------
        numpy.ndarray, shape (n_channels, m), float32
            Signal in microvolts, ``m = min(n, samples left)``.
        """
        spec = self.spec
        n = min(n, spec.n_samples - self.position)
        start = self.position
        sfreq = spec.sfreq
        out = self._background.next(n)
        t = (start + np.arange(n)) / sfreq

        if spec.seizure is not None:
            res = seizure_block(spec.seizure, t)
            if res is not None:
                rows, gain, add = res
                out[rows] *= gain
                out[rows] += add

        # mains: one phase for all channels (common-mode interference), slow amplitude
        # wander so notch-free detectors do not see a perfectly stationary line
        harmonic = 3 if 3 * spec.mains_hz < 0.45 * sfreq else 2
        wander = 1.0 + 0.1 * np.sin(2 * np.pi * 0.05 * t)
        basis = np.vstack(
            [
                wander * np.sin(2 * np.pi * spec.mains_hz * t),
                wander * np.sin(2 * np.pi * harmonic * spec.mains_hz * t + 0.7),
            ]
        ).astype(np.float32)
        if 2 * spec.mains_hz >= 0.5 * sfreq:  # no room for a harmonic below Nyquist
            basis[1] = 0.0
        # broadcasting, not matmul: BLAS results may depend on its thread count
        out += self._mains_amp[:, 0:1] * basis[0]
        out += self._mains_amp[:, 1:2] * basis[1]

        render_transients(out, spec.transients, start, sfreq, self._bg_rows)

        # re-reference the contacts: everything above (spikes, seizure, mains) is seen
        # against the reference, as an amplifier would record it
        if self._reference is not None:
            out[self._contact_rows] -= self._reference.next(n)[0]
        elif spec.reference == "average" and self._average_rows.size:
            out[self._contact_rows] -= out[self._average_rows].mean(axis=0)

        if self._dc_rows.size:
            p = spec.dc[self._dc_rows]
            out[self._dc_rows] = (
                p[:, 0:1] + p[:, 1:2] * np.sin(2 * np.pi * p[:, 2:3] * t[None, :] + p[:, 3:4])
            ).astype(np.float32) + out[self._dc_rows]
        if self._noisy_rows.size:
            noise = self._rng.standard_normal((self._noisy_rows.size, n), dtype=np.float32)
            noise *= (3.0 * spec.sigma[self._noisy_rows]).astype(np.float32)[:, None]
            out[self._noisy_rows] += noise
        if self._flat_rows.size:
            # a disconnected input: constant after the amplifier's offset removal
            out[self._flat_rows] = 0.0
        self.position += n
        return out
