"""The model zoo behind one interface, chosen by name.

Every entry is an estimator with explicit parameters (scikit-learn style):
``fit(store, fit_keys, val_keys)`` and ``predict(store, keys)``, the latter returning one
row per (patient, channel) with a ``score`` (higher = more likely SOZ). Estimators read the
store through :mod:`sozstore.models.data` and the datasets; the networks and the SVM
pipeline inside them never open files.

Names: ``sozformer``, ``dcgru``, ``szloc`` (torch), ``svm`` (RBF SVM on spike, HFO and
wavelet features), ``spike_rate``, ``hfo_rate``, ``ei`` (clinical baselines, no training).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sozstore._logging import logger
from sozstore.models import baselines
from sozstore.models.data import channel_table, onset_windows, recording_table
from sozstore.models.datasets import (ClipSequenceDataset, GraphSequenceDataset,
                                      RawWindowDataset, make_loader)
from sozstore.models.evaluation import youden_threshold

KEY_COLUMNS = ["key", "site", "subject", "channel"]


def _scores(frame: pl.DataFrame, score: pl.Series | np.ndarray) -> pl.DataFrame:
    return frame.select(KEY_COLUMNS).with_columns(pl.Series("score", np.asarray(score,
                                                                              dtype=float)))


# --------------------------------------------------------------------------- baselines
class RateBaseline:
    """Rank contacts by an event rate (``spike_rate`` or ``hfo_rate``), z-scored per patient."""

    def __init__(self, rate: str = "spike_rate") -> None:
        self.rate = rate

    def fit(self, store: str | Path, fit_keys: list[str], val_keys: list[str], *,
            labels: pl.DataFrame | None = None) -> "RateBaseline":
        return self  # nothing to learn

    def predict(self, store: str | Path, keys: list[str]) -> pl.DataFrame:
        table = channel_table(store).filter(pl.col("key").is_in(keys))
        if self.rate == "hfo_rate":
            table = table.with_columns((pl.col("ripple_rate").fill_null(0)
                                        + pl.col("fast_ripple_rate").fill_null(0))
                                       .alias("hfo_rate"))
        return _scores(table, baselines.within_patient_z(table, self.rate))


class EIBaseline:
    """Epileptogenicity Index over each patient's seizures (0 where it has none)."""

    def __init__(self, pre_s: float = 20.0, post_s: float = 25.0, sfreq: float = 250.0) -> None:
        self.pre_s = pre_s
        self.post_s = post_s
        self.sfreq = sfreq

    def fit(self, store: str | Path, fit_keys: list[str], val_keys: list[str], *,
            labels: pl.DataFrame | None = None) -> "EIBaseline":
        return self

    def predict(self, store: str | Path, keys: list[str]) -> pl.DataFrame:
        rows = []
        for info in recording_table(store, subjects=keys):
            for x, onset in onset_windows(store, info, pre_s=self.pre_s, post_s=self.post_s,
                                          sfreq=self.sfreq):
                ei = baselines.epileptogenicity_index(x, self.sfreq, onset)
                rows.extend({"key": f"{info.site}/{info.subject}", "site": info.site,
                             "subject": info.subject, "channel": c, "score": float(v)}
                            for c, v in zip(info.channels, ei))
        frame = pl.DataFrame(rows, schema={"key": pl.String, "site": pl.String,
                                           "subject": pl.String, "channel": pl.String,
                                           "score": pl.Float64})
        scored = frame.group_by(KEY_COLUMNS).agg(pl.col("score").mean())
        table = channel_table(store).filter(pl.col("key").is_in(keys)).select(KEY_COLUMNS)
        return table.join(scored, on=KEY_COLUMNS, how="left").with_columns(
            pl.col("score").fill_null(0.0))


# --------------------------------------------------------------------------- SVM
class SVMEstimator:
    """RBF SVM on per-channel spike, HFO, band-power and wavelet-packet features.

    Features are normalised within each patient first (rank percentiles, see
    :meth:`features`; the key step for cross-patient and cross-centre generalisation,
    models.md §4.3), then standardised on the training fold;
    ``class_weight="balanced"``; C and gamma by an inner GroupKFold over patients, scored by
    ROC AUC. Scores are the decision function.
    """

    def __init__(self, C: tuple[float, ...] = (0.1, 1.0, 10.0),
                 gamma: tuple[str | float, ...] = ("scale", 0.01), inner_folds: int = 3,
                 seed: int = 0) -> None:
        self.C = C
        self.gamma = gamma
        self.inner_folds = inner_folds
        self.seed = seed

    @staticmethod
    def features(table: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
        """Per-channel features as within-patient rank percentiles in (0, 1).

        Ranks rather than z-scores: an RBF kernel puts a z-scored outlier (a contact with a
        tenfold spike rate) far from every support vector, where the decision function is
        just the intercept, so the score of outliers would not depend on what was learned.
        Ranks are bounded and also measured better on generated cohorts (AUROC 0.88 vs
        0.83 on six patients).
        """
        skip = set(KEY_COLUMNS) | {"soz", "resected"}
        cols = [c for c in table.columns if c not in skip]
        ranks = table.select([((pl.col(c).rank("average").over("key") - 0.5)
                               / pl.len().over("key")).fill_nan(0.5).fill_null(0.5).alias(c)
                              for c in cols])
        return ranks.to_numpy().astype(np.float64), cols

    def fit(self, store: str | Path, fit_keys: list[str], val_keys: list[str], *,
            labels: pl.DataFrame | None = None) -> "SVMEstimator":
        table = channel_table(store, labels=labels).filter(pl.col("key").is_in(fit_keys)
                                                           & pl.col("soz").is_not_null())
        x, self.columns_ = self.features(table)
        y = table["soz"].to_numpy().astype(int)
        groups = table["key"].to_numpy()
        n_inner = min(self.inner_folds, len(set(groups)))
        search = GridSearchCV(
            make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced")),
            {"svc__C": list(self.C), "svc__gamma": list(self.gamma)},
            cv=GroupKFold(n_splits=max(n_inner, 2)), scoring="roc_auc", n_jobs=1)
        search.fit(x, y, groups=groups)
        self.pipeline_ = search.best_estimator_
        self.best_params_ = search.best_params_
        return self

    def predict(self, store: str | Path, keys: list[str]) -> pl.DataFrame:
        table = channel_table(store).filter(pl.col("key").is_in(keys))
        x, _ = self.features(table)
        return _scores(table, self.pipeline_.decision_function(x))


# --------------------------------------------------------------------------- torch models
@dataclass
class TorchConfig:
    """Training settings shared by the torch models (the demo shrinks them)."""

    model: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    gamma: float = 0.0
    beta: float = 0.999
    patience: int = 6
    n_clips: int = 25
    n_steps: int = 12
    raw_steps: int = 45
    pretrain_epochs: int = 5
    max_batches_per_epoch: int | None = None
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    #: torch CPU threads (0: torch's default). On a small shared machine 1 is much faster:
    #: bench/loader.py measured 2.9-74x slower steps with 2 threads on 2 busy cores.
    threads: int = 0


class TorchEstimator:
    """Train one of the networks with early stopping on the validation patients.

    The loss is the class-balanced focal BCE (``gamma``, ``beta``) whose class counts are
    unique (patient, channel) pairs of the training patients, not channel x window
    instances (with beta = 0.999 the latter saturate to no rebalancing, models.md §5.1);
    the realised weights are logged. SZLoc uses its own multi-task loss. Channel scores are
    the mean sigmoid over all windows of a patient.
    """

    def __init__(self, name: str, config: TorchConfig | None = None) -> None:
        self.name = name
        self.config = config or TorchConfig()

    # -- plumbing
    def _device(self) -> torch.device:
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    def _dataset(self, store: str | Path, keys: list[str], *, train: bool,
                 labels: pl.DataFrame | None = None) -> Any:
        recs = recording_table(store, subjects=keys, labels=labels)
        kw: dict[str, Any] = dict(seed=self.config.seed, shuffle=train, random_offsets=train,
                                  equalize=train and torch.distributed.is_initialized())
        if not train:
            # every rank predicts every window, so early stopping decides the same everywhere
            kw.update(rank=0, world_size=1)
        if self.name == "sozformer":
            return ClipSequenceDataset(store, recs, n_clips=self.config.n_clips, **kw)
        if self.name == "dcgru":
            return GraphSequenceDataset(store, recs, n_steps=self.config.n_steps, **kw)
        if self.name == "szloc":
            return RawWindowDataset(store, recs, n_steps=self.config.raw_steps, **kw)
        raise ValueError(f"unknown torch model {self.name!r}")

    def _build(self, n_features: int) -> torch.nn.Module:
        from sozstore.models.nn.registry import build_model

        cfg = dict(self.config.model)
        if self.name == "szloc":
            cfg.setdefault("n_samples", 200)
        else:
            cfg.setdefault("n_features", n_features)
        return build_model(self.name, cfg)

    def _forward(self, model: torch.nn.Module, batch: dict[str, Any], device: torch.device
                 ) -> tuple[torch.Tensor, Any]:
        mask = batch["mask"].to(device)
        x = batch["x"].to(device)
        if self.name == "dcgru":
            out = model(x, batch["adj"].to(device), mask)
            return out, out
        out = model(x, mask)
        if self.name == "szloc":
            return out["soz_logits"], out
        return out, out

    def _loss(self, logits: torch.Tensor, out: Any, batch: dict[str, Any],
              device: torch.device) -> torch.Tensor:
        from sozstore.models.nn.losses import focal_bce
        from sozstore.models.nn.szloc import szloc_loss

        y = batch["y"].to(device)
        mask = batch["mask"].to(device)
        if self.name == "szloc":
            steps = out["attention"].shape[1]
            lo = min(15, steps - 1)
            hi = min(30, steps)
            return szloc_loss(out, batch["seizure"].to(device), y, mask, exclude=(lo, hi))
        return focal_bce(logits, y, mask, gamma=self.config.gamma, weights=self.weights_)

    def train_step(self, net: torch.nn.Module, opt: torch.optim.Optimizer,
                   batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """One optimisation step on ``batch`` (forward, loss, backward, gradient-norm clip
        at 1, optimizer step); returns the loss. ``fit`` and bench/loader.py both use it."""
        logits, out = self._forward(net, batch, device)
        loss = self._loss(logits, out, batch, device)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return loss

    # -- estimator API
    def fit(self, store: str | Path, fit_keys: list[str], val_keys: list[str], *,
            labels: pl.DataFrame | None = None) -> "TorchEstimator":
        from sozstore.models.nn.losses import class_balanced_weights

        cfg = self.config
        torch.manual_seed(cfg.seed)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        device = self._device()
        counted = channel_table(store, labels=labels).filter(pl.col("key").is_in(fit_keys)
                                                             & pl.col("soz").is_not_null())
        n_pos = int(counted["soz"].sum())
        self.weights_ = class_balanced_weights(counted.height - n_pos, n_pos, beta=cfg.beta)
        logger.info("%s: class weights (neg, pos) = %s from %d unique patient-channels",
                    self.name, self.weights_, counted.height)
        # early stopping must see the same targets as training (shuffled ones in a leak
        # control), never the true labels of anyone
        self._labels = labels
        train_ds = self._dataset(store, fit_keys, train=True, labels=labels)
        model = self._build(getattr(train_ds, "n_features", 0)).to(device)
        if self.name == "dcgru" and cfg.pretrain_epochs > 0:
            self._pretrain(model, train_ds, device)
        ddp = torch.distributed.is_available() and torch.distributed.is_initialized()
        net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loader = make_loader(train_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        total_steps = max(1, cfg.epochs * max(1, math.ceil(len(train_ds) / cfg.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps
                                                    + 1, pct_start=0.05)
        best, best_state, stale = -np.inf, copy.deepcopy(model.state_dict()), 0
        self.history_: list[dict[str, float]] = []
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            train_ds.set_epoch(epoch)
            net.train()
            losses = []
            for b, batch in enumerate(loader):
                if cfg.max_batches_per_epoch and b >= cfg.max_batches_per_epoch:
                    break
                loss = self.train_step(net, opt, batch, device)
                if sched.last_epoch < total_steps:
                    sched.step()
                losses.append(float(loss.detach()))
            self.model_ = model
            score = self._validation_auroc(store, val_keys) if val_keys else -float(
                np.mean(losses))
            self.history_.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses
                                  else float("nan"), "val_auroc": score,
                                  "seconds": time.perf_counter() - t0})
            logger.info("%s epoch %d loss %.4f val patient-AUROC %.3f", self.name, epoch,
                        self.history_[-1]["loss"], score)
            if score > best + 1e-4:
                best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        model.load_state_dict(best_state)
        self.model_ = model
        return self

    def _pretrain(self, model: torch.nn.Module, dataset: Any, device: torch.device) -> None:
        """Self-supervised next-step prediction; the classifier starts from its encoder."""
        from sozstore.models.nn.dcgru import DCGRUForecaster

        cfg = self.config
        keys = ("hidden", "n_layers", "k_hops", "dropout", "top_k")
        forecaster = DCGRUForecaster(dataset.n_features, **{k: v for k, v in
                                                            self.config.model.items()
                                                            if k in keys}).to(device)
        opt = torch.optim.Adam(forecaster.parameters(), lr=1e-3)
        loader = make_loader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        self.pretrain_history_ = []
        for epoch in range(cfg.pretrain_epochs):
            dataset.set_epoch(1000 + epoch)
            losses = []
            for b, batch in enumerate(loader):
                if cfg.max_batches_per_epoch and b >= cfg.max_batches_per_epoch:
                    break
                loss = forecaster.loss(batch["x"].to(device), batch["adj"].to(device),
                                       batch["mask"].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            self.pretrain_history_.append(float(np.mean(losses)) if losses else float("nan"))
            logger.info("dcgru pretrain epoch %d next-step loss %.4f", epoch,
                        self.pretrain_history_[-1])
        model.encoder.load_state_dict(forecaster.encoder.state_dict())

    def _validation_auroc(self, store: str | Path, keys: list[str]) -> float:
        from sklearn.metrics import roc_auc_score

        pred = self.predict(store, keys)
        table = channel_table(store, labels=getattr(self, "_labels", None)).select(
            KEY_COLUMNS + ["soz"])
        joined = pred.join(table, on=KEY_COLUMNS).filter(pl.col("soz").is_not_null())
        aucs = []
        for _, g in joined.group_by("key"):
            y = g["soz"].to_numpy().astype(bool)
            if 0 < y.sum() < y.size:
                aucs.append(roc_auc_score(y, g["score"].to_numpy()))
        return float(np.mean(aucs)) if aucs else float("nan")

    @torch.no_grad()
    def predict(self, store: str | Path, keys: list[str], *,
                recording_ids: list[str] | None = None) -> pl.DataFrame:
        device = self._device()
        ds = self._dataset(store, keys, train=False)
        if recording_ids is not None:
            ds.recordings = [r for r in ds.recordings if r.recording_id in recording_ids]
        self.model_.eval()
        sums: dict[tuple[str, str, str], list[float]] = {}
        for batch in make_loader(ds, batch_size=self.config.batch_size):
            logits, _ = self._forward(self.model_, batch, device)
            prob = torch.sigmoid(logits).cpu().numpy()
            for i, meta in enumerate(batch["meta"]):
                for j, channel in enumerate(meta["channels"]):
                    sums.setdefault((meta["site"], meta["subject"], channel), []).append(
                        float(prob[i, j]))
        rows = [{"key": f"{s}/{sub}", "site": s, "subject": sub, "channel": c,
                 "score": float(np.mean(v))} for (s, sub, c), v in sums.items()]
        table = channel_table(store).filter(pl.col("key").is_in(keys)).select(KEY_COLUMNS)
        frame = pl.DataFrame(rows, schema={"key": pl.String, "site": pl.String,
                                           "subject": pl.String, "channel": pl.String,
                                           "score": pl.Float64})
        return table.join(frame, on=KEY_COLUMNS, how="left")


# --------------------------------------------------------------------------- registry
ZOO = ("sozformer", "dcgru", "szloc", "svm", "spike_rate", "hfo_rate", "ei")
#: Per-model training defaults that differ from :class:`TorchConfig`'s (measured on generated
#: cohorts: the DCGRU does not learn in 10 epochs at 3e-4, and its mean readout over steps
#: beats the last state on 5-s steps).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "dcgru": {"lr": 1e-3, "model": {"readout": "mean"}},
    "szloc": {"lr": 1e-4, "batch_size": 4},
}
LEARNED = ("sozformer", "dcgru", "szloc", "svm")


def make_estimator(name: str, config: dict[str, Any] | None = None) -> Any:
    """An estimator by name, with an optional config (TorchConfig fields for torch models,
    constructor arguments otherwise)."""
    config = dict(config or {})
    if name in ("sozformer", "dcgru", "szloc"):
        defaults = MODEL_DEFAULTS.get(name, {})
        merged = {**defaults, **config,
                  "model": {**defaults.get("model", {}), **config.get("model", {})}}
        return TorchEstimator(name, TorchConfig(**merged))
    if name == "svm":
        return SVMEstimator(**config)
    if name in ("spike_rate", "hfo_rate"):
        return RateBaseline(name)
    if name == "ei":
        return EIBaseline(**config)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(ZOO)}")


def estimator_config(estimator: Any) -> dict[str, Any]:
    """The serialisable config of an estimator (for the runs table)."""
    if isinstance(estimator, TorchEstimator):
        return {"name": estimator.name, **asdict(estimator.config)}
    return {"name": type(estimator).__name__, **{k: v for k, v in vars(estimator).items()
                                                 if not k.endswith("_")}}


def threshold_on_validation(val_pred: pl.DataFrame, labels: pl.DataFrame) -> float:
    """Youden's J threshold from validation patients' channels (never test)."""
    joined = val_pred.join(labels, on=KEY_COLUMNS).filter(pl.col("soz").is_not_null()
                                                          & pl.col("score").is_finite())
    return youden_threshold(joined["soz"].to_numpy(), joined["score"].to_numpy())
