"""The model zoo behind one interface, chosen by name.

Every entry is an estimator with explicit parameters (scikit-learn style):
``fit(store, fit_keys, val_keys)`` and ``predict(store, keys)``, the latter returning one
row per (patient, channel) with a ``score`` (higher = more likely SOZ). Estimators read the
store through :mod:`sozstore.models.data` and the datasets; the networks and the SVM
pipeline inside them never open files.

Names: ``sozformer``, ``dcgru``, ``szloc`` (torch), ``svm`` (RBF SVM on spike, HFO and
wavelet features), ``stack`` (a logistic regression over the within-patient ranks of other
models' out-of-fold scores), ``spike_rate``, ``hfo_rate``, ``ei`` and ``fragility``
(clinical and computational baselines, no training).

What keeps the learned models honest on patients they were not tuned on:

* inputs normalised within each recording or patient (robust z-scores of the clip
  features per recording, rank percentiles of the channel features per patient), so a
  patient's overall amplitude or event rate is not a feature;
* augmentation of the training windows (random channel subsets, per-channel gains, feature
  noise, random window offsets);
* early stopping, thresholds and hyper-parameter search (``TorchConfig.search``) on the
  validation patients of the training fold only;
* self-supervised pretraining (DCGRU next-step prediction, SOZFormer masked-clip
  reconstruction) on the recordings of the training and validation patients and of every
  patient without SOZ labels (those carry no clinician metric; their signals still teach
  the encoders what SEEG looks like).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

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
        rows: list[dict[str, Any]] = []
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
        if n_inner < 2:  # one patient: nothing to cross-validate over, middle of the grid
            self.best_params_ = {"svc__C": self.C[len(self.C) // 2],
                                 "svc__gamma": self.gamma[0]}
            self.pipeline_ = make_pipeline(StandardScaler(), SVC(
                kernel="rbf", class_weight="balanced", C=self.best_params_["svc__C"],
                gamma=self.best_params_["svc__gamma"])).fit(x, y)
            self._keep_arrays(x)
            return self
        search = GridSearchCV(
            make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced")),
            {"svc__C": list(self.C), "svc__gamma": list(self.gamma)},
            cv=GroupKFold(n_splits=max(n_inner, 2)), scoring="roc_auc", n_jobs=1)
        search.fit(x, y, groups=groups)
        self.pipeline_ = search.best_estimator_
        self.best_params_ = search.best_params_
        self._keep_arrays(x)
        return self

    def _keep_arrays(self, x: np.ndarray) -> None:
        """The fitted decision function as plain arrays (what a checkpoint stores).

        ``f(x) = sum_i a_i exp(-gamma |z - s_i|^2) + b`` with ``z`` the standardised
        features, ``s_i`` the support vectors and ``a_i`` their signed dual coefficients;
        ``gamma = "scale"`` resolves to ``1 / (n_features * var(z_train))`` as in
        scikit-learn. A test checks it equals the pipeline's decision function.
        """
        scaler, svc = self.pipeline_[0], self.pipeline_[-1]
        z = scaler.transform(x)
        gamma = self.best_params_["svc__gamma"]
        self.arrays_ = {"mean": scaler.mean_, "scale": scaler.scale_,
                        "support_vectors": svc.support_vectors_,
                        "dual_coef": svc.dual_coef_[0], "intercept": svc.intercept_,
                        "gamma": np.array([1.0 / (z.shape[1] * z.var()) if gamma == "scale"
                                           else float(gamma)])}

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """The SVM's decision function from its arrays (fresh or loaded alike)."""
        a = self.arrays_
        z = (x - a["mean"]) / a["scale"]
        sq = ((z ** 2).sum(1)[:, None] + (a["support_vectors"] ** 2).sum(1)[None, :]
              - 2.0 * z @ a["support_vectors"].T)
        return np.exp(-a["gamma"][0] * np.maximum(sq, 0.0)) @ a["dual_coef"] + a["intercept"][0]

    def predict(self, store: str | Path, keys: list[str]) -> pl.DataFrame:
        table = channel_table(store).filter(pl.col("key").is_in(keys))
        x, columns = self.features(table)
        if columns != self.columns_:  # another store's feature versions: say so, never misalign
            raise ValueError(f"{store}: channel features {columns} differ from the ones the "
                             f"SVM was trained on {self.columns_}")
        return _scores(table, self.decision_function(x))


# --------------------------------------------------------------------------- stacking
def within_patient_rank(frame: pl.DataFrame, column: str) -> pl.Series:
    """``column`` as a rank percentile in (0, 1) within each patient (``key``).

    Ties share their mean rank; missing values sit at the middle (0.5). Ranks make scores of
    different models and patients commensurable: a combiner then learns how much each
    ranking is worth, not each model's scale.
    """
    rank = (pl.col(column).rank("average").over("key") - 0.5) / pl.len().over("key")
    return frame.select(rank.fill_nan(0.5).fill_null(0.5).alias(column))[column]


#: Per-patient scores of the baselines, see :meth:`StackedEstimator._baseline_scores`.
_BASELINE_MEMO: dict[tuple[str, str, str, str], pl.DataFrame] = {}


class StackedEstimator:
    """Logistic regression over the within-patient ranks of other models' scores.

    The base models (learned ones and clinical baselines) score every training patient out
    of fold: the patients are split into ``inner_folds`` patient-wise folds and each learned
    base is fitted on the others, so the combiner never sees a score that a base model
    produced for a patient it was trained on (Wolpert's stacked generalisation; a combiner
    fitted on in-sample scores would trust the most over-fitted base). Baselines that learn
    nothing score every patient directly. The combiner is an L2-regularised logistic
    regression with balanced class weights on the per-patient rank percentiles of the base
    scores; at prediction time the bases are refitted on all training patients (early
    stopping on the validation patients) and their ranks combined with the learned weights.

    Parameters
    ----------
    bases : tuple of str
        Zoo names of the base models (any except ``stack``).
    base_configs : dict
        Optional config per base name (as for :func:`make_estimator`).
    inner_folds : int
        Patient-wise folds for the out-of-fold base scores of learned bases.
    C : float
        Inverse L2 strength of the combiner.
    seed : int
        Seed of the inner folds.
    """

    def __init__(self, bases: tuple[str, ...] = ("spike_rate", "hfo_rate", "ei", "fragility",
                                                 "svm"),
                 base_configs: dict[str, dict[str, Any]] | None = None, inner_folds: int = 3,
                 C: float = 1.0, seed: int = 0) -> None:
        self.bases = tuple(bases)
        self.base_configs = dict(base_configs or {})
        self.inner_folds = inner_folds
        self.C = C
        self.seed = seed

    def _base(self, name: str) -> Any:
        return make_estimator(name, self.base_configs.get(name))

    def _ranked(self, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
        """One row per (patient, channel) with a rank column per base."""
        out: pl.DataFrame | None = None
        for name in self.bases:
            frame = frames[name]
            ranked = frame.select(KEY_COLUMNS).with_columns(within_patient_rank(frame, "score")
                                                           .alias(name))
            out = ranked if out is None else out.join(ranked, on=KEY_COLUMNS, how="left")
        assert out is not None
        return out.with_columns(pl.col(list(self.bases)).fill_null(0.5))

    def fit(self, store: str | Path, fit_keys: list[str], val_keys: list[str], *,
            labels: pl.DataFrame | None = None) -> "StackedEstimator":
        from sklearn.linear_model import LogisticRegression

        if not self.bases or "stack" in self.bases:
            raise ValueError("stack needs base models other than itself")
        truth = channel_table(store, labels=labels).select(KEY_COLUMNS + ["soz"])
        # only labelled patients can weigh the bases (and train a learned base)
        labelled = set(truth.filter(pl.col("soz").is_not_null())["key"])
        keys = sorted((set(fit_keys) | set(val_keys)) & labelled)
        if len(keys) < 2:
            raise ValueError("stack needs at least two labelled training patients")
        rng = np.random.default_rng(self.seed)
        order = [keys[i] for i in rng.permutation(len(keys))]
        n_inner = max(2, min(self.inner_folds, len(keys)))
        inner = [order[k::n_inner] for k in range(n_inner)]
        oof: dict[str, pl.DataFrame] = {}
        for name in self.bases:
            if name not in LEARNED:
                oof[name] = self._baseline_scores(store, name, keys)
                continue
            parts = []
            for k, held in enumerate(inner):
                rest = [key for j, part in enumerate(inner) if j != k for key in part]
                est = self._base(name)
                if isinstance(est, TorchEstimator):  # early stopping needs its own patients
                    inner_val = [key for key in rest if key in set(val_keys)] or rest[:1]
                    inner_fit = [key for key in rest if key not in set(inner_val)] or rest
                else:
                    inner_fit, inner_val = rest, []
                est.fit(store, inner_fit, inner_val, labels=labels)
                parts.append(est.predict(store, held))
            oof[name] = pl.concat(parts)
        table = self._ranked(oof)
        train = table.join(truth, on=KEY_COLUMNS).filter(pl.col("soz").is_not_null())
        x = train.select(self.bases).to_numpy()
        y = train["soz"].to_numpy().astype(int)
        self.combiner_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000)
        if 0 < y.sum() < y.size:
            self.combiner_.fit(x, y)
        else:  # no labels to weigh the bases: equal weights (the mean rank)
            self.combiner_.fit(np.vstack([np.zeros(len(self.bases)), np.ones(len(self.bases))]),
                               [0, 1])
        self.weights_ = dict(zip(self.bases, self.combiner_.coef_[0].tolist()))
        self.arrays_ = {"coef": self.combiner_.coef_[0], "intercept": self.combiner_.intercept_}
        logger.info("stack: combiner weights %s on %d channels of %d patients",
                    {k: round(v, 3) for k, v in self.weights_.items()}, train.height, len(keys))
        self.fitted_ = {name: (self._base(name).fit(store, fit_keys, val_keys, labels=labels)
                               if name in LEARNED else self._base(name))
                        for name in self.bases}
        return self

    def _baseline_scores(self, store: str | Path, name: str, keys: list[str]) -> pl.DataFrame:
        """Scores of a baseline that learns nothing, per patient, memoised for the process.

        A baseline scores each patient from that patient's recordings alone, so its scores
        are the same in every fold; fragility and EI read raw signal around every seizure,
        and a 5-fold stack would otherwise recompute each patient five times. Like
        :func:`~sozstore.models.data.channel_table`, the memo assumes the store does not
        change under a running process.
        """
        config = json.dumps(self.base_configs.get(name), sort_keys=True, default=str)
        root = str(Path(store).resolve())
        if not keys:
            return self._base(name).predict(store, [])
        missing = [k for k in keys if (root, name, config, k) not in _BASELINE_MEMO]
        if missing:
            scored = self._base(name).predict(store, missing)
            for k in missing:
                _BASELINE_MEMO[(root, name, config, k)] = scored.filter(pl.col("key") == k)
        return pl.concat([_BASELINE_MEMO[(root, name, config, k)] for k in keys])

    def predict(self, store: str | Path, keys: list[str]) -> pl.DataFrame:
        table = self._ranked({name: (est.predict(store, keys) if name in LEARNED
                                     else self._baseline_scores(store, name, keys))
                              for name, est in self.fitted_.items()})
        x = table.select(self.bases).to_numpy()
        return _scores(table, x @ self.arrays_["coef"] + self.arrays_["intercept"][0])


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
    #: Fraction of clips masked in SOZFormer's masked-reconstruction pretraining.
    mask_fraction: float = 0.3
    #: Random channel subsets, per-channel gains and feature noise on training windows
    #: (feature models; see ``models.datasets.augment_clip_features``).
    augment: bool = True
    #: Hyper-parameter search on the validation patients: ``{"lr": [3e-4, 1e-3],
    #: "model.dropout": [0.1, 0.3]}``; ``search_budget`` combinations at most, drawn with the
    #: seed. Each candidate trains on the fit patients and is scored on the validation
    #: patients only, so in a cross-validation the outer test patients never take part.
    search: dict[str, list[Any]] = field(default_factory=dict)
    search_budget: int = 4
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

    model_: torch.nn.Module
    history_: list[dict[str, float]]
    weights_: tuple[float, float]

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
        if self.name in ("sozformer", "dcgru"):
            kw["augment"] = train and self.config.augment
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
        """Train on ``fit_keys`` with early stopping on ``val_keys``; with a ``search`` in
        the config, train every candidate and keep the best on the validation patients."""
        if not self.config.search:
            return self._fit_once(store, fit_keys, val_keys, labels=labels)
        candidates = search_candidates(self.config, seed=self.config.seed)
        base = self.config
        self.search_results_: list[dict[str, Any]] = []
        best_score, best_fit = -np.inf, None
        for params in candidates:
            self.config = apply_params(base, params)
            self._fit_once(store, fit_keys, val_keys, labels=labels)
            score = max((h["val_auroc"] for h in self.history_), default=float("nan"))
            self.search_results_.append({"params": params, "val_auroc": score})
            logger.info("%s search %s: validation patient-AUROC %.3f", self.name, params, score)
            if best_fit is None or (np.isfinite(score) and score > best_score):
                best_score = score if np.isfinite(score) else -np.inf
                best_fit = (params, self.config, self.model_, self.history_, self.weights_)
        assert best_fit is not None
        self.best_params_, self.config, self.model_, self.history_, self.weights_ = best_fit
        return self

    def _fit_once(self, store: str | Path, fit_keys: list[str], val_keys: list[str], *,
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
        if self.name in ("dcgru", "sozformer") and cfg.pretrain_epochs > 0:
            # self-supervised: every recording that is not a held-out test patient's,
            # labelled or not (patients without any label only ever help here)
            pretrain_keys = sorted(set(fit_keys) | set(val_keys) | unlabelled_keys(store))
            self._pretrain(model, self._dataset(store, pretrain_keys, train=True), device)
        ddp = torch.distributed.is_available() and torch.distributed.is_initialized()
        net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loader = make_loader(train_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        total_steps = max(1, cfg.epochs * max(1, math.ceil(len(train_ds) / cfg.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps
                                                    + 1, pct_start=0.05)
        best, best_state, stale = -np.inf, copy.deepcopy(model.state_dict()), 0
        self.history_ = []
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
        """Self-supervised pretraining; the classifier starts from the pretrained encoder.

        DCGRU: next-step prediction of the clip features (DCGRUForecaster). SOZFormer:
        masked-clip reconstruction, as in masked autoencoding (a random ``mask_fraction``
        of each channel's clips is zeroed, i.e. set to the recording's median after the
        robust normalisation, and a linear head reconstructs them from the temporal
        encoder's tokens).
        """
        if self.name == "sozformer":
            self._pretrain_masked(model, dataset, device)
            return
        from sozstore.models.nn.dcgru import DCGRUForecaster

        cfg = self.config
        keys = ("hidden", "n_layers", "k_hops", "dropout", "top_k")
        forecaster = DCGRUForecaster(dataset.n_features, **{k: v for k, v in
                                                            self.config.model.items()
                                                            if k in keys}).to(device)
        opt = torch.optim.Adam(forecaster.parameters(), lr=1e-3)
        self._pretrain_loop(dataset, opt, lambda batch: forecaster.loss(
            batch["x"].to(device), batch["adj"].to(device), batch["mask"].to(device)),
            label="dcgru pretrain next-step")
        model.encoder.load_state_dict(  # type: ignore[union-attr]
            forecaster.encoder.state_dict())

    def _pretrain_masked(self, model: torch.nn.Module, dataset: Any, device: torch.device
                         ) -> None:
        from sozstore.models.nn.sozformer import masked_reconstruction_loss

        cfg = self.config
        head = torch.nn.Linear(model.d_model, model.n_features).to(device)  # type: ignore[arg-type]
        params = [*model.tokenizer.parameters(), model.clip_position,  # type: ignore[union-attr]
                  *model.temporal.parameters(), *head.parameters()]  # type: ignore[union-attr]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.train()
        self._pretrain_loop(dataset, opt, lambda batch: masked_reconstruction_loss(
            model, head, batch["x"].to(device), batch["mask"].to(device),  # type: ignore[arg-type]
            fraction=cfg.mask_fraction, generator=gen),
            label="sozformer pretrain masked-clip", clip=params)

    def _pretrain_loop(self, dataset: Any, opt: torch.optim.Optimizer,
                       loss_of: Callable[[dict[str, Any]], torch.Tensor], *, label: str,
                       clip: list[torch.Tensor] | None = None) -> None:
        """The epochs of a self-supervised task: ``loss_of(batch)`` minimised with ``opt``
        (gradient norm clipped at 1 over ``clip`` when given); the mean loss per epoch is
        kept in ``pretrain_history_``."""
        cfg = self.config
        loader = make_loader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        self.pretrain_history_ = []
        for epoch in range(cfg.pretrain_epochs):
            dataset.set_epoch(1000 + epoch)
            losses = []
            for b, batch in enumerate(loader):
                if cfg.max_batches_per_epoch and b >= cfg.max_batches_per_epoch:
                    break
                loss = loss_of(batch)
                opt.zero_grad()
                loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(clip, 1.0)
                opt.step()
                losses.append(float(loss.detach()))
            self.pretrain_history_.append(float(np.mean(losses)) if losses else float("nan"))
            logger.info("%s epoch %d loss %.4f", label, epoch, self.pretrain_history_[-1])

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


def unlabelled_keys(store: str | Path) -> set[str]:
    """Patients of the store without a single SOZ label (usable for self-supervision)."""
    table = channel_table(store)
    labelled = set(table.filter(pl.col("soz").is_not_null())["key"])
    return set(table["key"]) - labelled


def search_candidates(config: TorchConfig, *, seed: int) -> list[dict[str, Any]]:
    """Up to ``config.search_budget`` combinations of the search space, drawn with ``seed``
    (the first is always the first value of every parameter)."""
    import itertools

    names = sorted(config.search)
    grid = [dict(zip(names, values))
            for values in itertools.product(*(config.search[n] for n in names))]
    if len(grid) <= config.search_budget:
        return grid
    rng = np.random.default_rng(seed)
    rest = rng.choice(np.arange(1, len(grid)), size=config.search_budget - 1, replace=False)
    return [grid[0], *(grid[int(i)] for i in sorted(rest))]


def apply_params(config: TorchConfig, params: dict[str, Any]) -> TorchConfig:
    """A copy of ``config`` with ``params`` set (``model.NAME`` sets a network argument);
    the copy has no search of its own."""
    fields_ = asdict(config)
    model = dict(fields_.pop("model"))
    for name, value in params.items():
        if name.startswith("model."):
            model[name[len("model."):]] = value
        elif name in fields_ and name not in ("search", "search_budget"):
            fields_[name] = value
        else:
            raise ValueError(f"unknown search parameter {name!r}")
    fields_.update(model=model, search={})
    return TorchConfig(**fields_)


# --------------------------------------------------------------------------- registry
ZOO = ("sozformer", "dcgru", "szloc", "svm", "stack", "spike_rate", "hfo_rate", "ei",
       "fragility")
#: Per-model training defaults that differ from :class:`TorchConfig`'s (measured on generated
#: cohorts: the DCGRU does not learn in 10 epochs at 3e-4, and its mean readout over steps
#: beats the last state on 5-s steps).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "dcgru": {"lr": 1e-3, "model": {"readout": "mean"}},
    "szloc": {"lr": 1e-4, "batch_size": 4},
}
LEARNED = ("sozformer", "dcgru", "szloc", "svm", "stack")


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
    if name == "fragility":
        from sozstore.models.fragility import FragilityBaseline

        return FragilityBaseline(**config)
    if name == "stack":
        return StackedEstimator(**config)
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


# --------------------------------------------------------------------------- checkpoints
#: Estimator classes a checkpoint may name (nothing else is ever constructed from one).
def _checkpoint_classes() -> dict[str, type]:
    from sozstore.models.fragility import FragilityBaseline

    return {c.__name__: c for c in (RateBaseline, EIBaseline, FragilityBaseline,
                                    SVMEstimator, StackedEstimator, TorchEstimator)}


def _params(estimator: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(estimator).items() if not k.endswith("_")
            and not k.startswith("_")}


def estimator_state(estimator: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A fitted estimator as JSON-able metadata and named arrays (a checkpoint's content).

    Parameters are stored as they were given; what was learned is stored as arrays (a
    network's state dict, the SVM's support vectors and coefficients, the stack's combiner
    weights) and as plain values (the SVM's feature columns). :func:`estimator_from_state`
    rebuilds the estimator without executing anything the file says: the class comes from a
    fixed list, the rest is data.
    """
    name = type(estimator).__name__
    if name not in _checkpoint_classes():
        raise TypeError(f"no checkpoint format for {name}")
    meta: dict[str, Any] = {"class": name, "params": json.loads(json.dumps(
        _params(estimator), default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__")
        else list(o)))}
    arrays: dict[str, np.ndarray] = {}
    if isinstance(estimator, TorchEstimator):
        meta["model_config"] = estimator.model_.get_config()  # type: ignore[operator]
        meta["weights"] = list(getattr(estimator, "weights_", ()))
        arrays = {f"model.{k}": v.detach().cpu().numpy()
                  for k, v in estimator.model_.state_dict().items()}
    elif isinstance(estimator, SVMEstimator):
        meta["columns"] = list(estimator.columns_)
        meta["best_params"] = estimator.best_params_
        arrays = {f"svm.{k}": np.asarray(v) for k, v in estimator.arrays_.items()}
    elif isinstance(estimator, StackedEstimator):
        meta["weights"] = estimator.weights_
        arrays = {f"stack.{k}": np.asarray(v) for k, v in estimator.arrays_.items()}
        meta["fitted"] = {}
        for base, est in estimator.fitted_.items():
            sub_meta, sub_arrays = estimator_state(est)
            meta["fitted"][base] = sub_meta
            arrays.update({f"base.{base}.{k}": v for k, v in sub_arrays.items()})
    return meta, arrays


def estimator_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`estimator_state`."""
    classes = _checkpoint_classes()
    cls = classes.get(meta.get("class", ""))
    if cls is None:
        raise ValueError(f"unknown estimator class {meta.get('class')!r} in checkpoint")
    params = dict(meta["params"])
    if cls is TorchEstimator:
        from sozstore.models.nn.registry import build_model

        config = TorchConfig(**params["config"])
        est: Any = TorchEstimator(params["name"], config)
        est.model_ = build_model(params["name"], meta["model_config"])
        est.model_.load_state_dict({k[len("model."):]: torch.from_numpy(v.copy())
                                    for k, v in arrays.items() if k.startswith("model.")})
        est.weights_ = tuple(meta.get("weights", ()))
        return est
    if cls is SVMEstimator:
        params["C"], params["gamma"] = tuple(params["C"]), tuple(params["gamma"])
    if cls is StackedEstimator:
        params["bases"] = tuple(params["bases"])
    est = cls(**params)
    if cls is SVMEstimator:
        est.columns_ = list(meta["columns"])
        est.best_params_ = meta["best_params"]
        est.arrays_ = {k[len("svm."):]: v for k, v in arrays.items() if k.startswith("svm.")}
    elif cls is StackedEstimator:
        est.weights_ = meta["weights"]
        est.arrays_ = {k[len("stack."):]: v for k, v in arrays.items()
                       if k.startswith("stack.")}
        est.fitted_ = {}
        for base, sub_meta in meta["fitted"].items():
            prefix = f"base.{base}."
            est.fitted_[base] = estimator_from_state(
                sub_meta, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    return est
