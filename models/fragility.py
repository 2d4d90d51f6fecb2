"""Neural fragility (Li et al. 2021, Nature Neuroscience 24:1465; Sritharan & Sarma 2014).

Method
------
The signals are cut into short sliding windows (250 ms, step 125 ms, as in the paper). In
each window a linear time-invariant model ``x(t+1) = A x(t)`` is fitted by least squares with
a small ridge (Tikhonov) penalty, as the paper does for numerical stability with many
contacts. The *fragility* of contact ``k`` is how small a perturbation of ``A`` restricted to
contact ``k`` suffices to make the network unstable, i.e. to move an eigenvalue of
``A + Delta_k`` onto the unit circle ``|lambda| = 1``.

Variant implemented (the paper's)
---------------------------------
* **Column perturbation** ``Delta_k = b e_k^T`` (only column ``k`` of ``A`` changes: how
  contact ``k``'s activity drives every contact), the perturbation the paper uses for its
  SOZ analysis; ``perturbation="row"`` (``Delta_k = e_k b^T``, how contact ``k`` is driven)
  is available for comparison.
* **Real perturbations**: ``b`` must be real, because a perturbed network is still a real
  network. For a target ``lambda = r e^{i w}``, ``A + b e_k^T`` has ``lambda`` as an
  eigenvalue iff ``e_k^T (A - lambda I)^{-1} b = -1``. Writing
  ``m_k = e_k^T (A - lambda I)^{-1} = p + i q`` (``p``, ``q`` real), the constraint is the pair
  of real equations ``p b = -1``, ``q b = 0``, whose minimum-norm solution is the paper's
  ``b = B^T (B B^T)^{-1} [-1, 0]^T`` with ``B = [p; q]``. Its squared norm is the (1, 1)
  entry of ``(B B^T)^{-1}``, i.e.::

      ||b||^2 = |q|^2 / (|p|^2 |q|^2 - (p.q)^2) = 1 / (|p|^2 - (p.q)^2 / |q|^2)

  (``1 / |p|^2`` when ``lambda`` is real and ``q = 0``). ``structure="complex"`` gives the
  unstructured closed form ``1 / |m_k|`` (a lower bound on the real one).
* **Search over the unit circle**: the minimum over ``lambda = e^{i w}`` is taken on a grid
  of ``n_angles`` angles in ``[0, pi]`` (the spectrum of a real ``A`` and the norm above are
  symmetric under ``w -> -w``), to which the angles of the ``n_eig_angles`` eigenvalues of
  ``A`` nearest the circle are added: the resolvent, and with it the fragility, peaks
  sharply next to those eigenvalues, between the points of a coarse grid.
* **Normalisation per window across contacts**, as in the paper:
  ``fragility_k = (max_j ||Delta_j|| - ||Delta_k||) / max_j ||Delta_j||`` in ``[0, 1)``;
  the most robust contact of a window gets 0, the most fragile the largest value.
* **Summary per contact**: the mean of its normalised fragility over the windows around
  each seizure onset (the peri-ictal heat map the paper reads the SOZ from), then averaged
  over the patient's seizures (:class:`FragilityBaseline`).

The array functions do no I/O; :class:`FragilityBaseline` gets its peri-ictal signals from
the :class:`~sozstore.models.estimator.CohortData` it is given, exactly as the EI baseline
does.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import polars as pl
from numpy.typing import NDArray

from sozstore.models.configs import FragilityConfig
from sozstore.models.estimator import KEY_COLUMNS, CohortData, EstimatorBase

Perturbation = Literal["column", "row"]
Structure = Literal["real", "complex"]

#: Memory budget (bytes) for one batch of complex resolvents (windows x angles x n x n).
_BATCH_BYTES = 64 * 2**20


# --------------------------------------------------------------------------- linear models
def fit_linear_model(x: NDArray[np.floating], ridge: float = 1e-4) -> NDArray[np.float64]:
    """Least-squares fit of ``x(t+1) = A x(t)`` with a ridge penalty.

    Minimises ``||Y - A X||_F^2 + alpha ||A||_F^2`` with ``X = x[..., :-1]`` and
    ``Y = x[..., 1:]``, so ``A = Y X^T (X X^T + alpha I)^{-1}``. ``alpha = ridge *
    trace(X X^T) / n_channels`` is relative to the mean channel power, so one ``ridge`` fits
    any amplitude scale (microvolts or z-scores) and any window length. Each channel's mean
    is removed first: the model has no offset term, and a DC level would otherwise pull an
    eigenvalue to 1.

    Parameters
    ----------
    x : array of shape (..., n_channels, n_samples)
        One window, or a batch of windows (leading axes).
    ridge : float
        Relative Tikhonov regularisation (>= 0). It keeps ``X X^T`` invertible when a window
        has fewer samples than channels or channels are collinear (common references).

    Returns
    -------
    A : array of shape (..., n_channels, n_channels)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[-1] < 2:
        raise ValueError(f"x must be (..., n_channels, n_samples >= 2), got {x.shape}")
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative, got {ridge}")
    x = x - x.mean(axis=-1, keepdims=True)
    past, future = x[..., :-1], x[..., 1:]
    n = x.shape[-2]
    gram = past @ np.swapaxes(past, -1, -2)                       # X X^T, symmetric
    cross = past @ np.swapaxes(future, -1, -2)                    # X Y^T = (Y X^T)^T
    power = np.trace(gram, axis1=-2, axis2=-1)[..., None, None] / n
    # an all-zero window (a flat or NaN-filled segment) has X X^T = 0: give it alpha = 1 so
    # that its A is 0 rather than the solve failing
    alpha = np.where(power > 0, ridge * power, 1.0)
    # A^T = (X X^T + alpha I)^{-1} X Y^T: a symmetric solve, no explicit inverse
    a_t = np.linalg.solve(gram + alpha * np.eye(n), cross)
    return np.swapaxes(a_t, -1, -2)


def _target_angles(A: NDArray[np.floating], n_angles: int, n_eig_angles: int, radius: float
                   ) -> NDArray[np.float64]:
    """Angles in [0, pi] to search, per matrix: a uniform grid plus eigenvalue angles.

    Returns an array of shape (..., n_angles + n_eig_angles).
    """
    grid = np.linspace(0.0, np.pi, n_angles)
    grid = np.broadcast_to(grid, A.shape[:-2] + (n_angles,))
    if n_eig_angles <= 0:
        return grid
    eig = np.linalg.eigvals(A)                                     # (..., n)
    k = min(n_eig_angles, eig.shape[-1])
    nearest = np.argsort(np.abs(np.abs(eig) - radius), axis=-1)[..., :k]
    extra = np.abs(np.angle(np.take_along_axis(eig, nearest, axis=-1)))
    return np.concatenate([grid, extra], axis=-1)


def _norms_from_rows(rows: NDArray[np.complex128], structure: Structure
                     ) -> NDArray[np.float64]:
    """Minimum perturbation norm for each row ``m_k`` of the resolvent (last axis = entries).

    ``rows`` has shape (..., n_channels, n_channels); returns (..., n_channels).
    """
    if structure == "complex":
        return 1.0 / np.maximum(np.linalg.norm(rows, axis=-1), 1e-300)
    p, q = rows.real, rows.imag
    pp = np.einsum("...i,...i->...", p, p)
    qq = np.einsum("...i,...i->...", q, q)
    pq = np.einsum("...i,...i->...", p, q)
    # ||b||^2 = 1 / (|p|^2 - (p.q)^2/|q|^2): |p|^2 minus p's component along q, i.e. the
    # squared norm of p projected off q. For a real target (q = 0) the second term vanishes.
    real_target = qq <= 1e-24 * np.maximum(pp, 1e-300)
    proj = np.where(real_target, 0.0, pq * pq / np.where(real_target, 1.0, qq))
    denom = np.maximum(pp - proj, 1e-300)                           # p parallel to q: no
    return 1.0 / np.sqrt(denom)                                     # real solution (inf-ish)


@overload
def minimum_perturbation_norms(A: NDArray[np.floating], n_angles: int = ..., *,
                               n_eig_angles: int = ..., radius: float = ...,
                               perturbation: Perturbation = ..., structure: Structure = ...,
                               return_angle: Literal[False] = ...) -> NDArray[np.float64]: ...


@overload
def minimum_perturbation_norms(A: NDArray[np.floating], n_angles: int = ..., *,
                               n_eig_angles: int = ..., radius: float = ...,
                               perturbation: Perturbation = ..., structure: Structure = ...,
                               return_angle: Literal[True]
                               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...


def minimum_perturbation_norms(A: NDArray[np.floating], n_angles: int = 51, *,
                               n_eig_angles: int = 4, radius: float = 1.0,
                               perturbation: Perturbation = "column",
                               structure: Structure = "real",
                               return_angle: bool = False
                               ) -> NDArray[np.float64] | tuple[NDArray[np.float64],
                                                                NDArray[np.float64]]:
    """Smallest perturbation of each contact that puts an eigenvalue on the circle.

    For each contact ``k`` and each target ``lambda = radius * e^{i w}`` the minimum 2-norm
    perturbation (``b e_k^T`` for columns, ``e_k b^T`` for rows) has a closed form from the
    resolvent ``(A - lambda I)^{-1}`` (module docstring); the result is its minimum over the
    angles searched.

    Parameters
    ----------
    A : array of shape (..., n_channels, n_channels)
        One state matrix or a batch (leading axes).
    n_angles : int
        Points of the uniform angle grid on ``[0, pi]`` (both ends included: the real targets
        +radius and -radius).
    n_eig_angles : int
        Also search at the angles of this many eigenvalues of ``A`` nearest the circle
        (0: the grid only).
    radius : float
        Radius of the target circle (1: the stability boundary of a discrete-time system).
    perturbation : {"column", "row"}
        ``"column"`` (the paper's): ``Delta_k = b e_k^T``; ``"row"``: ``Delta_k = e_k b^T``.
    structure : {"real", "complex"}
        ``"real"`` (the paper's): ``b`` real; ``"complex"``: ``b`` complex, norm
        ``1 / ||e_k^T (A - lambda I)^{-1}||``.
    return_angle : bool
        Also return the minimising angle per contact.

    Returns
    -------
    norms : array of shape (..., n_channels)
        ``min_w ||Delta_k(w)||_2``.
    angles : array of shape (..., n_channels)
        The minimising ``w`` (only when ``return_angle``).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must be (..., n, n), got {A.shape}")
    if perturbation not in ("column", "row"):
        raise ValueError(f"perturbation must be 'column' or 'row', got {perturbation!r}")
    if structure not in ("real", "complex"):
        raise ValueError(f"structure must be 'real' or 'complex', got {structure!r}")
    if n_angles < 2:
        raise ValueError("n_angles must be at least 2")
    n = A.shape[-1]
    batch_shape = A.shape[:-2]
    flat = A.reshape((-1, n, n))
    angles = _target_angles(flat, n_angles, n_eig_angles, radius).reshape(flat.shape[0], -1)
    n_w = angles.shape[-1]
    eye = np.eye(n)
    best = np.empty((flat.shape[0], n))
    best_w = np.empty((flat.shape[0], n))
    # batches of matrices so the complex resolvents (m x angles x n x n) stay within budget
    per_matrix = n_w * n * n * 16
    step = max(1, _BATCH_BYTES // max(per_matrix, 1))
    for lo in range(0, flat.shape[0], step):
        a = flat[lo:lo + step]                                             # (m, n, n)
        lam = radius * np.exp(1j * angles[lo:lo + step])                   # (m, W)
        shifted = a[:, None, :, :] - lam[:, :, None, None] * eye           # (m, W, n, n)
        # Every row (column) of the resolvent is needed, one per contact, so the full
        # inverse is the solve here (one LU per target, batched over windows and angles).
        res = np.linalg.inv(shifted)
        rows = res if perturbation == "column" else np.swapaxes(res, -1, -2)
        norms = _norms_from_rows(rows, structure)                          # (m, W, n)
        idx = np.argmin(norms, axis=1)                                     # (m, n)
        best[lo:lo + step] = np.take_along_axis(norms, idx[:, None, :], axis=1)[:, 0]
        best_w[lo:lo + step] = np.take_along_axis(angles[lo:lo + step], idx, axis=1)
    out = best.reshape(batch_shape + (n,))
    if return_angle:
        return out, best_w.reshape(batch_shape + (n,))
    return out


def minimum_perturbation(A: NDArray[np.floating], k: int, angle: float, *,
                         radius: float = 1.0, perturbation: Perturbation = "column",
                         structure: Structure = "real") -> NDArray[np.float64 | np.complex128]:
    """The minimum-norm perturbation ``Delta_k`` itself for one target (checks, figures).

    Parameters
    ----------
    A : array of shape (n_channels, n_channels)
    k : int
        Contact whose column (row) is perturbed.
    angle : float
        Target ``lambda = radius * e^{i angle}``.

    Returns
    -------
    Delta : array of shape (n_channels, n_channels)
        Zero except column (row) ``k``; real when ``structure="real"``. ``A + Delta`` has
        ``lambda`` as an eigenvalue.
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    lam = radius * np.exp(1j * angle)
    e_k = np.zeros(n)
    e_k[k] = 1.0
    shifted = A - lam * np.eye(n)
    # one row (column) of the resolvent: a single solve, no inverse
    m = (np.linalg.solve(shifted.T, e_k) if perturbation == "column"
         else np.linalg.solve(shifted, e_k))
    if structure == "complex":
        b: NDArray = -np.conj(m) / np.vdot(m, m).real
    else:
        B = np.vstack([m.real, m.imag])                                    # (2, n)
        if np.linalg.norm(m.imag) <= 1e-12 * np.linalg.norm(m.real):
            b = -m.real / (m.real @ m.real)
        else:
            b = B.T @ np.linalg.solve(B @ B.T, np.array([-1.0, 0.0]))
    delta = np.zeros((n, n), dtype=b.dtype)
    if perturbation == "column":
        delta[:, k] = b
    else:
        delta[k, :] = b
    return delta


# --------------------------------------------------------------------------- maps, scores
def sliding_windows(x: NDArray[np.floating], sfreq: float, window_s: float, step_s: float
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cut ``x`` (n_channels, n_samples) into windows.

    Returns
    -------
    times : array of shape (n_windows,)
        Window centres in seconds from the start of ``x``.
    windows : array of shape (n_windows, n_channels, n_window_samples)
        A strided view (no copy).
    """
    data: NDArray[np.float64] = np.asarray(x, dtype=np.float64)           # no copy if float64
    win = round(window_s * sfreq)
    step = round(step_s * sfreq)
    if win < 2 or step < 1:
        raise ValueError(f"window {window_s} s / step {step_s} s too short at {sfreq} Hz")
    if data.shape[-1] < win:
        raise ValueError(f"{data.shape[-1]} samples is shorter than one window ({win})")
    view = np.lib.stride_tricks.sliding_window_view(data, win, axis=-1)[:, ::step]
    windows: NDArray[np.float64] = np.swapaxes(view, 0, 1)                 # (W, n_ch, win)
    times = (np.arange(windows.shape[0], dtype=np.float64) * step + win / 2) / float(sfreq)
    return times, windows


def fragility_map(x: NDArray[np.floating], sfreq: float, window_s: float = 0.25,
                  step_s: float = 0.125, *, ridge: float = 1e-4, n_angles: int = 51,
                  n_eig_angles: int = 4, radius: float = 1.0,
                  perturbation: Perturbation = "column", structure: Structure = "real",
                  standardise: bool = True
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Normalised fragility of every contact in every sliding window.

    Parameters
    ----------
    x : array of shape (n_channels, n_samples)
    sfreq : float
        Sampling rate of ``x`` (Hz).
    window_s, step_s : float
        Window length and step (the paper: 250 ms and 125 ms).
    ridge, n_angles, n_eig_angles, radius, perturbation, structure
        See :func:`fit_linear_model` and :func:`minimum_perturbation_norms`.
    standardise : bool
        Divide each channel by its standard deviation over the whole of ``x`` first. A
        channel's gain rescales its column of ``A`` (``D A D^{-1}``) and with it the
        perturbation norms, so without this a contact's amplifier gain or distance to the
        reference would bias its fragility; one scale per channel over the whole segment
        keeps the within-segment (ictal) changes that fragility should see.

    Returns
    -------
    times : array of shape (n_windows,)
        Window centres in seconds from the start of ``x``.
    fragility : array of shape (n_channels, n_windows)
        ``(max_j ||Delta_j|| - ||Delta_k||) / max_j ||Delta_j||`` per window, in [0, 1).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be (n_channels, n_samples), got {x.shape}")
    if standardise:
        sd = x.std(axis=1, keepdims=True)
        x = x / np.where(sd > 0, sd, 1.0)
    times, windows = sliding_windows(x, sfreq, window_s, step_s)
    A = fit_linear_model(windows, ridge)                                  # (W, n, n)
    norms = minimum_perturbation_norms(A, n_angles, n_eig_angles=n_eig_angles, radius=radius,
                                       perturbation=perturbation, structure=structure)
    top = norms.max(axis=1, keepdims=True)
    fragility = (top - norms) / np.where(top > 0, top, 1.0)
    return times, fragility.T


def fragility_score(fragility: NDArray[np.floating], times: NDArray[np.floating] | None = None,
                    *, onset_s: float | None = None,
                    span_s: tuple[float, float] = (-np.inf, np.inf)) -> NDArray[np.float64]:
    """One fragility per contact: the mean of its map over the windows of a span.

    Parameters
    ----------
    fragility : array of shape (n_channels, n_windows)
        From :func:`fragility_map`.
    times : array of shape (n_windows,), optional
        Window centres (s); needed when ``onset_s`` is given.
    onset_s : float, optional
        Seizure onset in the time base of ``times``; ``span_s`` is relative to it. Without
        it every window counts.
    span_s : (float, float)
        Inclusive span of window centres around the onset, e.g. ``(-10, 10)``.

    Returns
    -------
    score : array of shape (n_channels,)
        NaN where the span holds no window.
    """
    fragility = np.asarray(fragility, dtype=np.float64)
    if onset_s is None:
        return fragility.mean(axis=1) if fragility.shape[1] else np.full(len(fragility),
                                                                          np.nan)
    if times is None:
        raise ValueError("times are needed with onset_s")
    rel = np.asarray(times) - onset_s
    keep = (rel >= span_s[0]) & (rel <= span_s[1])
    if not keep.any():
        return np.full(fragility.shape[0], np.nan)
    return fragility[:, keep].mean(axis=1)


# --------------------------------------------------------------------------- estimator
class FragilityBaseline(EstimatorBase):
    """Neural fragility of each contact around each seizure onset (no training).

    For each recording of a patient with seizure onsets, the signal from ``pre_s`` before to
    ``post_s`` after each onset is read at about ``sfreq`` (:func:`onset_windows`, as for
    the EI), its fragility map computed (:func:`fragility_map`) and averaged per contact over
    all its windows; a contact's score is the mean over the patient's seizures. Contacts
    never seen around a seizure (none in the patient's recordings, or a channel absent from
    the ictal runs) get the patient's median score (0 when the patient has no seizure),
    so that they rank in the middle rather than at an extreme.

    Parameters
    ----------
    config : FragilityConfig, optional
        The hyper-parameters below (keyword arguments build one when it is omitted).
    pre_s, post_s : float
        Seconds before and after the onset (at least 10 s in all: ``onset_windows`` skips
        shorter segments). The paper reads the SOZ from the peri-ictal heat map; the span
        holds the pre-ictal state and the onset with its early spread, not the late ictal
        period when most contacts are recruited.
    sfreq : float
        Target rate: ``onset_windows`` decimates the store's signal by the integer factor
        nearest ``store rate / sfreq`` and the maps use the rate that results (so a store at
        2 kHz is read at 1 kHz, one at 1 kHz as it is). 1 kHz is the paper's rate and keeps
        250 samples in a 250-ms window, more than a 100-contact implant has channels; at
        250 Hz a window has fewer samples than channels and the fit is ridge-dominated
        (measured on the hard 12-patient phantom: mean per-patient AUROC 0.49 at 250 Hz,
        0.78 at 500 Hz, 0.81 at 1 kHz, for about the same time: the cost is in the
        per-window resolvents, whose number does not depend on the rate).
    window_s, step_s : float
        Sliding window and step (the paper's 250 ms / 125 ms).
    ridge : float
        Relative Tikhonov penalty of the per-window fit (:func:`fit_linear_model`).
    n_angles, n_eig_angles : int
        Search grid on the unit circle (:func:`minimum_perturbation_norms`).
    perturbation : {"column", "row"}
        The paper's column perturbation by default.
    standardise : bool
        Per-channel scaling of each peri-ictal segment (:func:`fragility_map`).
    """

    name = "fragility"
    config: FragilityConfig

    def __init__(self, config: FragilityConfig | None = None, **params: Any) -> None:
        self.config = config or FragilityConfig(**params)

    def fit(self, train: CohortData, validation: CohortData | None = None
            ) -> FragilityBaseline:
        """Nothing to learn."""
        return self

    def read_rate(self, store_sfreq: float) -> float:
        """The rate :func:`onset_windows` returns for a recording stored at ``store_sfreq``
        (it decimates by the integer factor nearest ``store_sfreq / self.config.sfreq``)."""
        return store_sfreq / max(1, int(round(store_sfreq / self.config.sfreq)))

    def contact_fragility(self, x: NDArray[np.floating], onset_s: float,
                          sfreq: float | None = None) -> NDArray[np.float64]:
        """Score of each contact for one peri-ictal segment.

        Parameters
        ----------
        x : array of shape (n_channels, n_samples)
        onset_s : float
            Seizure onset from the start of ``x`` (s).
        sfreq : float, optional
            Rate of ``x``; ``self.config.sfreq`` when not given.

        Returns
        -------
        array of shape (n_channels,)
            Mean normalised fragility over the windows from ``pre_s`` before to ``post_s``
            after the onset.
        """
        cfg = self.config
        times, frag = fragility_map(x, sfreq or cfg.sfreq, cfg.window_s, cfg.step_s,
                                    ridge=cfg.ridge, n_angles=cfg.n_angles,
                                    n_eig_angles=cfg.n_eig_angles,
                                    perturbation=cfg.perturbation,
                                    standardise=cfg.standardise)
        return fragility_score(frag, times, onset_s=onset_s, span_s=(-cfg.pre_s, cfg.post_s))

    def predict_proba(self, data: CohortData) -> pl.DataFrame:
        """Mean fragility of every channel over its patient's seizures (see the class)."""
        # the store's rate per recording, to know the rate onset_windows really returns
        # (its integer decimation factor need not reach the configured sfreq exactly)
        cfg = self.config
        rates = data.sampling_rates()
        rows: list[dict[str, Any]] = []
        for info in data.recordings():
            rate = self.read_rate(rates[info.recording_id])
            for x, onset in data.onset_windows(info, pre_s=cfg.pre_s, post_s=cfg.post_s,
                                               sfreq=cfg.sfreq):
                score = self.contact_fragility(x, onset, rate)
                rows.extend({"key": f"{info.site}/{info.subject}", "site": info.site,
                             "subject": info.subject, "channel": c, "score": float(v)}
                            for c, v in zip(info.channels, score) if np.isfinite(v))
        frame = pl.DataFrame(rows, schema={"key": pl.String, "site": pl.String,
                                           "subject": pl.String, "channel": pl.String,
                                           "score": pl.Float64})
        scored = frame.group_by(KEY_COLUMNS).agg(pl.col("score").mean())
        table = data.features().select(KEY_COLUMNS)
        return (table.join(scored, on=KEY_COLUMNS, how="left")
                .with_columns(pl.col("score").fill_null(pl.col("score").median().over("key")))
                .with_columns(pl.col("score").fill_null(0.0)))
