"""Clinical baselines that need no training, as pure functions.

* Spike-rate and HFO-rate ranking: a contact's score is its rate, z-scored within the
  patient (a rank statistic inside each patient, so one threshold fits patients whose overall
  rates differ tenfold).
* The Epileptogenicity Index (Bartolomei, Chauvel & Wendling 2008, Brain 131:1818): the
  energy ratio ER(t) = (E_beta + E_gamma) / (E_theta + E_alpha) in sliding windows around a
  seizure onset; a Page-Hinkley cumulative-sum test finds when ER rises in each contact
  (detection time N_d); EI = mean ER over [N_d, N_d + H] divided by (N_d - N_0 + tau), with
  N_0 the earliest detection; normalised to a maximum of 1 per seizure and averaged over a
  patient's seizures. Contacts that never rise get 0.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import NDArray

#: Bands of the energy ratio (Hz), as in Bartolomei et al. 2008.
EI_BANDS = {"theta": (3.5, 7.4), "alpha": (7.4, 12.4), "beta": (12.4, 24.0),
            "gamma": (24.0, 97.0)}


def within_patient_z(frame: pl.DataFrame, column: str, *, log: bool = True) -> pl.Series:
    """``column`` z-scored within each patient (``key``), after ``log1p`` if asked."""
    value = pl.col(column).log1p() if log else pl.col(column)
    z = (value - value.mean().over("key")) / (value.std().over("key") + 1e-9)
    return frame.select(z.fill_nan(0.0).fill_null(0.0).alias("score"))["score"]


def energy_ratio(x: NDArray, sfreq: float, *, window_s: float = 1.0, step_s: float = 0.25
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ER per contact and window.

    Parameters
    ----------
    x : array of shape (n_channels, n_samples)
    sfreq : float

    Returns
    -------
    times : array of shape (n_windows,)
        Window centres in seconds from the start of ``x``.
    ratio : array of shape (n_channels, n_windows)
    """
    win = int(round(window_s * sfreq))
    step = int(round(step_s * sfreq))
    n_win = 1 + (x.shape[1] - win) // step
    idx = np.arange(win)[None, :] + step * np.arange(n_win)[:, None]
    seg = x[:, idx] * np.hanning(win)  # (n_ch, n_win, win)
    power = np.abs(np.fft.rfft(seg, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / sfreq)

    def band(lo: float, hi: float) -> NDArray:
        return power[..., (freqs >= lo) & (freqs < hi)].sum(axis=-1)

    high = band(*EI_BANDS["beta"]) + band(*EI_BANDS["gamma"])
    low = band(*EI_BANDS["theta"]) + band(*EI_BANDS["alpha"])
    times = (np.arange(n_win) * step + win / 2) / sfreq
    return times, high / (low + 1e-12)


def page_hinkley(ratio: NDArray, *, baseline: int, bias: float = 0.5, threshold: float = 10.0
                 ) -> NDArray[np.int64]:
    """Detection index per contact (-1 when ER never rises).

    ``ratio`` (n_channels, n_windows) is divided by its median over the first ``baseline``
    windows, so one ``bias`` and ``threshold`` fit every contact. U_N is the cumulative sum of
    (ER_N - 1 - bias); an alarm is raised when U_N - min_{k<=N} U_k exceeds ``threshold``, and
    the detection time is the last minimum before the alarm (the change point).
    """
    base = np.median(ratio[:, :max(baseline, 1)], axis=1, keepdims=True)
    norm = ratio / (base + 1e-12)
    u = np.cumsum(norm - 1.0 - bias, axis=1)
    running_min = np.minimum.accumulate(u, axis=1)
    alarm = (u - running_min) > threshold
    out = np.full(ratio.shape[0], -1, dtype=np.int64)
    for c in np.flatnonzero(alarm.any(axis=1)):
        first = int(np.argmax(alarm[c]))
        out[c] = int(np.argmin(u[c, : first + 1]))
    return out


def epileptogenicity_index(x: NDArray, sfreq: float, onset_s: float, *, tau_s: float = 1.0,
                           horizon_s: float = 5.0, step_s: float = 0.25,
                           bias: float = 0.5, threshold: float = 10.0) -> NDArray[np.float64]:
    """EI of every contact for one seizure (``onset_s`` from the start of ``x``).

    Returns
    -------
    array of shape (n_channels,)
        In [0, 1]; 0 for contacts whose ER never rises.
    """
    times, ratio = energy_ratio(x, sfreq, step_s=step_s)
    baseline = int(np.searchsorted(times, onset_s - 1.0))
    detect = page_hinkley(ratio, baseline=baseline, bias=bias, threshold=threshold)
    # Detections long before the marked onset are background fluctuations, not the seizure.
    detect[(detect >= 0) & (times[np.maximum(detect, 0)] < onset_s - 5.0)] = -1
    ei = np.zeros(ratio.shape[0])
    hit = detect >= 0
    if not hit.any():
        return ei
    n0 = times[detect[hit]].min()
    h = int(round(horizon_s / step_s))
    for c in np.flatnonzero(hit):
        nd = detect[c]
        ei[c] = ratio[c, nd: nd + h].mean() / (times[nd] - n0 + tau_s)
    return ei / ei.max() if ei.max() > 0 else ei
