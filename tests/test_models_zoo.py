"""Training aids of the zoo: augmentation, self-supervised pretraining, hyper-parameter
search on validation patients, and the stacked model's out-of-fold discipline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from sozstore.models.datasets import (
    ClipSequenceDataset,
    GraphSequenceDataset,
    augment_clip_features,
    channel_subset,
)
from sozstore.models.estimator import CohortData
from sozstore.models.inputs import BANDS, N_CLIP_FEATURES, recording_table, subject_keys
from sozstore.models.nn.sozformer import SOZFormer, masked_reconstruction_loss
from sozstore.models.registry import build_estimator
from sozstore.models.zoo import (
    StackedEstimator,
    SVMEstimator,
    TorchConfig,
    apply_params,
    search_candidates,
    within_patient_rank,
)


# --------------------------------------------------------------------------- augmentation
def test_channel_subset_bounds_and_determinism() -> None:
    for n in (3, 10, 57):
        for seed in range(20):
            keep = channel_subset(np.random.default_rng(seed), n, keep_min=0.6)
            assert np.all(np.diff(keep) > 0) and keep.min() >= 0 and keep.max() < n
            assert len(keep) >= max(2, int(np.ceil(0.6 * n)))
    a = channel_subset(np.random.default_rng(4), 30)
    b = channel_subset(np.random.default_rng(4), 30)
    assert np.array_equal(a, b)
    assert np.array_equal(channel_subset(np.random.default_rng(0), 2), [0, 1])


@pytest.mark.parametrize("channel_axis", [0, 1])
def test_gain_shifts_power_features_by_twice_the_log_gain(channel_axis: int) -> None:
    rng = np.random.default_rng(0)
    shape = (5, 4, N_CLIP_FEATURES) if channel_axis == 0 else (4, 5, N_CLIP_FEATURES)
    x = rng.normal(size=shape).astype(np.float32)
    out = augment_clip_features(np.random.default_rng(1), x, channel_axis=channel_axis,
                                noise_sd=0.0)
    shift = out - x
    if channel_axis == 1:
        shift = shift.transpose(1, 0, 2)
    gain = shift[:, 0, 0] / 2.0  # delta log-power = 2 log g
    n_bands = len(BANDS)
    np.testing.assert_allclose(shift[:, :, :n_bands], 2 * gain[:, None, None]
                               * np.ones((1, 4, n_bands)), atol=1e-6)
    np.testing.assert_allclose(shift[:, :, n_bands], gain[:, None] * np.ones((1, 4)),
                               atol=1e-6)  # line length: g, not g**2
    assert np.all(shift[:, :, n_bands + 2:] == 0)  # shape features untouched
    assert np.std(gain) > 0.05  # channels get different gains


def test_augmented_samples_keep_labels_and_channels_aligned(
        phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    recs = recording_table(store)
    plain = ClipSequenceDataset(store, recs, n_clips=4, augment=False, shuffle=False,
                                random_offsets=False)
    aug = ClipSequenceDataset(store, recs, n_clips=4, augment=True, shuffle=False,
                              random_offsets=False)
    smaller = 0
    for p, a in zip(plain, aug):
        names = p["meta"]["channels"]
        keep = [names.index(c) for c in a["meta"]["channels"]]
        assert a["x"].shape == (len(keep), 4, N_CLIP_FEATURES)
        assert torch.equal(a["y"].nan_to_num(-1), p["y"][keep].nan_to_num(-1))
        assert torch.equal(a["valid"], p["valid"][keep])
        smaller += len(keep) < len(names)
    assert smaller > 0
    graph = GraphSequenceDataset(store, recs, n_steps=3, augment=True, shuffle=False)
    g = next(iter(graph))
    n = len(g["meta"]["channels"])
    assert g["x"].shape[1] == n and g["adj"].shape[1:] == (n, n) and g["y"].shape == (n,)


# --------------------------------------------------------------------------- pretraining
def test_masked_reconstruction_trains_the_temporal_stage_only() -> None:
    torch.manual_seed(0)
    model = SOZFormer(6, d_model=16, n_heads=2, n_temporal_layers=1, n_spatial_layers=1,
                      dim_feedforward=32, dropout=0.0, max_clips=8)
    head = torch.nn.Linear(16, 6)
    # a learnable structure: every clip repeats its channel's pattern
    pattern = torch.randn(4, 5, 1, 6)
    x = pattern.expand(4, 5, 8, 6).clone()
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 3:] = False
    x[0, 3:] = float("nan")  # padding never reaches the loss
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(60):
        loss = masked_reconstruction_loss(model, head, x, mask, fraction=0.3, generator=gen)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.spatial.parameters())
        assert all(p.grad is None for p in model.head.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5])


# --------------------------------------------------------------------------- search
def test_search_candidates_budget_and_apply() -> None:
    cfg = TorchConfig(search={"lr": [1e-4, 3e-4, 1e-3], "model.dropout": [0.1, 0.3]},
                      search_budget=3)
    first = search_candidates(cfg, seed=0)
    assert len(first) == 3 and first[0] == {"lr": 1e-4, "model.dropout": 0.1}
    assert first == search_candidates(cfg, seed=0)
    assert len(search_candidates(TorchConfig(search={"lr": [1.0, 2.0]}), seed=0)) == 2
    applied = apply_params(cfg, {"lr": 1e-3, "model.dropout": 0.3})
    assert applied.lr == 1e-3 and applied.model == {"dropout": 0.3} and applied.search == {}
    with pytest.raises(ValueError, match="unknown search parameter"):
        apply_params(cfg, {"learning_rate": 1.0})


def test_search_keeps_the_best_validation_candidate(phantom_store: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    data = CohortData.from_store(store)
    est = build_estimator("sozformer", {
        "model": {"d_model": 16, "n_heads": 2, "n_temporal_layers": 1, "n_spatial_layers": 1,
                  "dim_feedforward": 16},
        "epochs": 1, "n_clips": 4, "max_batches_per_epoch": 1, "pretrain_epochs": 0,
        "threads": 1, "search": {"lr": [1e-4, 1e-3]}})
    scores = iter([0.55, 0.71])
    monkeypatch.setattr(type(est), "_validation_auroc", lambda self, validation: next(scores))
    est.fit(data.subset(keys[:4]), data.subset(keys[4:]))
    assert est.best_params_ == {"lr": 1e-3} and est.config.lr == 1e-3
    assert [r["val_auroc"] for r in est.search_results_] == [0.55, 0.71]


# --------------------------------------------------------------------------- stacking
def test_within_patient_rank() -> None:
    frame = pl.DataFrame({"key": ["a", "a", "a", "b", "b"], "s": [3.0, 1.0, None, 10.0, 20.0]})
    assert within_patient_rank(frame, "s").to_list() == pytest.approx(
        [0.5, 1 / 6, 0.5, 0.25, 0.75])


def test_stack_scores_patients_out_of_fold(phantom_store: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    fitted: list[set[str]] = []
    calls: list[tuple[set[str], set[str]]] = []
    fit, predict = SVMEstimator.fit, SVMEstimator.predict_proba

    def spy_fit(self, train, validation=None):  # type: ignore[no-untyped-def]
        self.seen_ = set(train.keys)
        fitted.append(set(train.keys))
        return fit(self, train, validation)

    def spy_predict(self, data):  # type: ignore[no-untyped-def]
        calls.append((self.seen_, set(data.keys)))
        return predict(self, data)

    monkeypatch.setattr(SVMEstimator, "fit", spy_fit)
    monkeypatch.setattr(SVMEstimator, "predict_proba", spy_predict)
    data = CohortData.from_store(store)
    stack = StackedEstimator(bases=("spike_rate", "hfo_rate", "svm"), inner_folds=3)
    stack.fit(data.subset(keys[:4]), data.subset(keys[4:5]))
    # every out-of-fold prediction is of patients the SVM was not fitted on
    assert len(calls) == 3 and all(not (seen & pred) for seen, pred in calls)
    assert set().union(*(pred for _, pred in calls)) == set(keys[:5])
    assert set(stack.weights_) == {"spike_rate", "hfo_rate", "svm"}
    assert all(np.isfinite(w) for w in stack.weights_.values())
    out = stack.predict_proba(data.subset(keys[5:]))
    assert out["score"].is_finite().all() and set(out["key"]) == set(keys[5:])


def test_stack_with_an_unlabelled_patient(phantom_store: tuple[Path, Path]) -> None:
    from sozstore.models.inputs import channel_table

    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    labels = channel_table(store).select("site", "subject", "channel", "key", "soz")
    labels = labels.with_columns(pl.when(pl.col("key") == keys[0]).then(None)
                                 .otherwise(pl.col("soz")).alias("soz")).drop("key")
    data = CohortData.from_store(store, labels=labels)
    stack = StackedEstimator(bases=("spike_rate", "svm"), inner_folds=2)
    stack.fit(data.subset(keys[:4]), data.subset(keys[4:5]))
    assert stack.predict_proba(data.subset(keys[5:]))["score"].is_finite().all()


# --------------------------------------------------------------------------- checkpoints
TINY_SOZFORMER = {"model": {"d_model": 16, "n_heads": 2, "n_temporal_layers": 1,
                            "n_spatial_layers": 1, "dim_feedforward": 16},
                  "epochs": 1, "n_clips": 4, "max_batches_per_epoch": 2, "pretrain_epochs": 1,
                  "threads": 1}


@pytest.mark.parametrize("name, config", [
    ("spike_rate", None), ("hfo_rate", None), ("ei", None), ("svm", None),
    ("stack", {"bases": ["spike_rate", "svm", "sozformer"],
               "base_configs": {"sozformer": TINY_SOZFORMER}, "inner_folds": 2}),
    ("sozformer", TINY_SOZFORMER),
])
def test_checkpoint_round_trip_predicts_the_same(phantom_store: tuple[Path, Path],
                                                 tmp_path: Path, name: str,
                                                 config: dict | None) -> None:
    from sozstore.models.checkpoint import load_checkpoint

    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    data = CohortData.from_store(store)
    est = build_estimator(name, config).fit(data.subset(keys[:4]), data.subset(keys[4:5]))
    est.save(tmp_path / "fold0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold0.json", "fold0.safetensors"]
    loaded = load_checkpoint(tmp_path / "fold0.json")
    assert type(loaded) is type(est)
    a, b = est.predict_proba(data.subset(keys[5:])), loaded.predict_proba(data.subset(keys[5:]))
    np.testing.assert_allclose(b["score"].to_numpy(), a["score"].to_numpy(), rtol=1e-6,
                               atol=1e-9)


def test_svm_arrays_equal_the_fitted_pipeline(phantom_store: tuple[Path, Path]) -> None:
    from sozstore.models.inputs import channel_table

    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    for gamma in (("scale",), (0.01,)):
        est = SVMEstimator(gamma=gamma).fit(CohortData.from_store(store).subset(keys[:5]))
        x, _ = est.features(channel_table(store).filter(pl.col("key") == keys[5]))
        np.testing.assert_allclose(est.decision_function(x),
                                   est.pipeline_.decision_function(x), rtol=1e-8, atol=1e-8)


def test_loading_never_unpickles(tmp_path: Path) -> None:
    import json
    import pickle

    from sozstore.models.checkpoint import load_checkpoint, save_checkpoint

    legacy = tmp_path / "fold0.pkl"
    legacy.write_bytes(pickle.dumps({"kind": "pickle", "estimator": object()}))
    with pytest.raises(ValueError, match="could execute code"):
        load_checkpoint(legacy)
    save_checkpoint(build_estimator("spike_rate"), tmp_path / "fold1")
    meta = json.loads((tmp_path / "fold1.json").read_text())
    meta["class"] = "os.system"
    (tmp_path / "fold1.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown estimator class"):
        load_checkpoint(tmp_path / "fold1.json")
