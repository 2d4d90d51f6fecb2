"""Neural fragility (sozstore.models.fragility): closed forms, a known fragile node, the
estimator end to end on the phantom store."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sozstore.models.fragility import (
    FragilityBaseline,
    fit_linear_model,
    fragility_map,
    fragility_score,
    minimum_perturbation,
    minimum_perturbation_norms,
)


def _simulate(A: np.ndarray, n_samples: int, *, seed: int = 0, noise: float = 1.0
              ) -> np.ndarray:
    """x(t+1) = A x(t) + w(t), w ~ N(0, noise^2 I); returns (n_channels, n_samples)."""
    rng = np.random.default_rng(seed)
    n = A.shape[0]
    x = np.zeros((n, n_samples))
    w = rng.normal(scale=noise, size=(n, n_samples))
    for t in range(n_samples - 1):
        x[:, t + 1] = A @ x[:, t] + w[:, t]
    return x


def _fragile_system(n: int = 8, k: int = 3, seed: int = 1) -> np.ndarray:
    """A stable network whose node ``k`` has a self-loop close to 1 and drives the others:
    a small change to column k (its outgoing weights) reaches the unit circle."""
    rng = np.random.default_rng(seed)
    A = 0.4 * np.eye(n) + rng.normal(scale=0.04, size=(n, n))
    A[k, k] = 0.93
    A[:, k] += np.where(np.arange(n) == k, 0.0, 0.1)
    assert np.abs(np.linalg.eigvals(A)).max() < 1.0
    return A


# --------------------------------------------------------------------------- linear fit
def test_fit_recovers_a_known_system() -> None:
    A = _fragile_system()
    x = _simulate(A, 20_000)
    A_hat = fit_linear_model(x, ridge=1e-6)
    assert A_hat.shape == A.shape
    np.testing.assert_allclose(A_hat, A, atol=0.03)


def test_fit_batches_and_survives_flat_and_underdetermined_windows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 20, 10))                    # 3 windows, 20 channels, 10 samples
    x[1] = 0.0                                          # a flat (NaN-filled) window
    A = fit_linear_model(x, ridge=1e-3)
    assert A.shape == (3, 20, 20)
    assert np.isfinite(A).all()
    np.testing.assert_array_equal(A[1], 0.0)
    np.testing.assert_allclose(A[2], fit_linear_model(x[2], ridge=1e-3))
    # the ridge is relative to channel power: rescaling the data leaves A unchanged
    np.testing.assert_allclose(fit_linear_model(1e4 * x[0], 1e-3), A[0], rtol=1e-8,
                               atol=1e-10)


# --------------------------------------------------------------------------- closed form
@pytest.mark.parametrize("perturbation", ["column", "row"])
@pytest.mark.parametrize("structure", ["real", "complex"])
def test_returned_perturbation_puts_an_eigenvalue_on_the_circle(perturbation: str,
                                                                 structure: str) -> None:
    rng = np.random.default_rng(3)
    A = rng.normal(scale=0.3, size=(5, 5))
    norms, angles = minimum_perturbation_norms(A, 51, perturbation=perturbation,
                                               structure=structure, return_angle=True)
    for k in range(5):
        delta = minimum_perturbation(A, k, angles[k], perturbation=perturbation,
                                     structure=structure)
        others = np.delete(np.arange(5), k)
        touched = delta[:, others] if perturbation == "column" else delta[others, :]
        np.testing.assert_array_equal(touched, 0.0)          # only column (row) k moves
        if structure == "real":
            assert not np.iscomplexobj(delta)
        assert np.linalg.norm(delta, 2) == pytest.approx(norms[k], rel=1e-8)
        target = np.exp(1j * angles[k])
        assert np.min(np.abs(np.linalg.eigvals(A + delta) - target)) < 1e-8


def test_closed_form_is_the_minimum_norm_against_brute_force() -> None:
    """On a 3x3 matrix: the closed form equals a least-norm solve of the eigenvalue
    constraint at every angle of a fine grid, no feasible real perturbation is smaller, and
    the default coarse grid (with eigenvalue angles) is within 2 % of the fine minimum."""
    rng = np.random.default_rng(7)
    A = rng.normal(scale=0.5, size=(3, 3))
    n = 3
    fine = np.linspace(0.0, np.pi, 2001)
    brute = np.full(n, np.inf)
    for w in fine:
        lam = np.exp(1j * w)
        res = np.linalg.inv(A - lam * np.eye(n))
        for k in range(n):
            B = np.vstack([res[k].real, res[k].imag])
            b, *_ = np.linalg.lstsq(B, np.array([-1.0, 0.0]), rcond=None)
            if np.allclose(B @ b, [-1.0, 0.0], atol=1e-9):           # feasible
                brute[k] = min(brute[k], np.linalg.norm(b))
                # any other feasible b (b + null-space component) is longer
                null = np.linalg.svd(B)[2][2:]
                other = b + null.T @ rng.normal(size=null.shape[0])
                assert np.linalg.norm(other) >= np.linalg.norm(b) - 1e-12
    closed = minimum_perturbation_norms(A, fine.size, n_eig_angles=0)
    np.testing.assert_allclose(closed, brute, rtol=1e-6)
    coarse = minimum_perturbation_norms(A)
    assert np.all(coarse >= closed - 1e-9)                # a grid cannot beat the minimum
    np.testing.assert_allclose(coarse, closed, rtol=0.02)
    # the real-structured norm is never below the unstructured (complex) one
    assert np.all(coarse >= minimum_perturbation_norms(A, structure="complex") - 1e-12)


def test_perturbation_norms_batch_like_single_matrices() -> None:
    rng = np.random.default_rng(0)
    A = rng.normal(scale=0.3, size=(2, 3, 6, 6))
    batched = minimum_perturbation_norms(A, 21)
    assert batched.shape == (2, 3, 6)
    np.testing.assert_allclose(batched[1, 2], minimum_perturbation_norms(A[1, 2], 21))


# --------------------------------------------------------------------------- known fragile node
def test_known_fragile_node_is_the_most_fragile() -> None:
    k = 3
    A = _fragile_system(k=k)
    norms = minimum_perturbation_norms(A)
    assert int(np.argmin(norms)) == k                     # on the true system
    # and recovered from simulated data, window by window as in the paper
    sfreq = 1000.0
    x = _simulate(A, 20_000, seed=2)
    times, frag = fragility_map(x, sfreq, ridge=1e-4)
    assert frag.shape == (A.shape[0], times.size)
    assert np.all((frag >= 0) & (frag < 1))
    score = fragility_score(frag)
    assert int(np.argmax(score)) == k
    # the fragile node is the most fragile in the large majority of single windows
    assert np.mean(np.argmax(frag, axis=0) == k) > 0.8


# --------------------------------------------------------------------------- shapes, determinism
def test_map_shapes_times_and_determinism() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 2500))                        # 5 s at 500 Hz
    times, frag = fragility_map(x, 500.0, window_s=0.25, step_s=0.125)
    assert frag.shape == (7, 39) and times.shape == (39,)
    # the step is a whole number of samples (62 at 500 Hz), the window 125 samples
    assert times[0] == pytest.approx(0.125) and np.diff(times) == pytest.approx(62 / 500)
    np.testing.assert_array_equal(frag.max(axis=0) > 0, True)
    np.testing.assert_array_equal(frag.min(axis=0), 0.0)  # the most robust contact per window
    times2, frag2 = fragility_map(x.copy(), 500.0)
    np.testing.assert_array_equal(frag, frag2)
    np.testing.assert_array_equal(times, times2)
    # per-channel gains do not change the standardised map
    gains = rng.uniform(0.1, 10.0, size=(7, 1))
    np.testing.assert_allclose(fragility_map(gains * x, 500.0)[1], frag, atol=1e-8)


def test_score_spans_around_the_onset() -> None:
    frag = np.tile(np.arange(10.0), (2, 1))
    times = np.arange(10.0)
    np.testing.assert_allclose(fragility_score(frag), [4.5, 4.5])
    np.testing.assert_allclose(fragility_score(frag, times, onset_s=5.0, span_s=(-1, 1)),
                               [5.0, 5.0])
    assert np.isnan(fragility_score(frag, times, onset_s=50.0, span_s=(0, 1))).all()
    with pytest.raises(ValueError):
        fragility_score(frag, onset_s=1.0)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        minimum_perturbation_norms(np.zeros((3, 4)))
    with pytest.raises(ValueError):
        minimum_perturbation_norms(np.zeros((3, 3)), perturbation="diagonal")  # type: ignore
    with pytest.raises(ValueError):
        fit_linear_model(np.zeros((3, 10)), ridge=-1.0)
    with pytest.raises(ValueError):
        fragility_map(np.zeros((3, 10)), 500.0)           # shorter than one window


# --------------------------------------------------------------------------- estimator
def test_estimator_scores_every_channel_on_the_phantom(phantom_store) -> None:
    from sozstore.models.inputs import channel_table, subject_keys

    store, _ = phantom_store
    keys = subject_keys(store)["key"].to_list()
    from sozstore.models.estimator import CohortData

    data = CohortData.from_store(store)
    model = FragilityBaseline(n_angles=21)
    assert model.fit(data.subset(keys[:2]), data.subset(keys[2:3])) is model
    pred = model.predict_proba(data.subset(keys))
    assert pred.columns == ["key", "site", "subject", "channel", "score"]
    expected = channel_table(store).filter(pl.col("key").is_in(keys))
    assert pred.height == expected.height
    assert set(pred["key"].unique()) == set(keys)
    assert pred["score"].is_finite().all()
    assert pred["score"].is_between(0.0, 1.0).all()
    # deterministic
    assert pred.equals(model.predict_proba(data.subset(keys)))
