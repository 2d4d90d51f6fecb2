"""The estimators of the model zoo (see :mod:`sozstore.models.registry` for their names).

Every estimator follows :class:`~sozstore.models.estimator.Estimator` (scikit-learn style,
a validated config from :mod:`sozstore.models.configs`): ``fit(train, validation)`` and
``predict_proba(data)`` on :class:`~sozstore.models.estimator.CohortData`, the latter
returning one row per (patient, channel) with a ``score`` (higher = more likely SOZ),
``get_params()``, ``save(path)`` and ``load(path)``. Estimators do no I/O: the experiment opens
the store and hands them the patients' frames, recordings and datasets.

Models: ``sozformer``, ``dcgru``, ``szloc`` (torch), ``svm`` (RBF SVM on spike, HFO and
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
import math
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from numpy.typing import NDArray
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm.auto import tqdm

from sozstore._logging import logger
from sozstore.models import baselines
from sozstore.models.configs import EIConfig, RateConfig, StackConfig, SVMConfig, TorchConfig
from sozstore.models.datasets import batch_to_device, make_loader
from sozstore.models.estimator import KEY_COLUMNS, CohortData, EstimatorBase, scores_frame
from sozstore.models.metrics import youden_threshold

__all__ = ["KEY_COLUMNS", "EIBaseline", "RateBaseline", "SVMEstimator", "StackedEstimator",
           "TorchConfig", "TorchEstimator", "apply_params", "estimator_config",
           "search_candidates", "threshold_on_validation", "within_patient_rank"]


# --------------------------------------------------------------------------- baselines
class RateBaseline(EstimatorBase):
    """Rank contacts by an event rate (``spike_rate`` or ``hfo_rate``), z-scored per patient.

    Parameters
    ----------
    rate : {"spike_rate", "hfo_rate"}
        The rate (its zoo name).
    config : RateConfig, optional
        No hyper-parameters.
    """

    def __init__(self, rate: Literal["spike_rate", "hfo_rate"] = "spike_rate",
                 config: RateConfig | None = None) -> None:
        if rate not in ("spike_rate", "hfo_rate"):
            raise ValueError(f"rate must be 'spike_rate' or 'hfo_rate', got {rate!r}")
        self.name = rate
        self.config: RateConfig = config or RateConfig()

    @property
    def rate(self) -> str:
        """The event rate ranked (``spike_rate`` or ``hfo_rate``)."""
        return self.name

    def fit(self, train: CohortData, validation: CohortData | None = None) -> RateBaseline:
        """Nothing to learn."""
        return self

    def predict_proba(self, data: CohortData) -> pl.DataFrame:
        """The rate of every channel, log1p and z-scored within its patient."""
        table = data.features()
        if self.name == "hfo_rate":
            table = table.with_columns((pl.col("ripple_rate").fill_null(0)
                                        + pl.col("fast_ripple_rate").fill_null(0))
                                       .alias("hfo_rate"))
        return scores_frame(table, baselines.within_patient_z(table, self.name))


class EIBaseline(EstimatorBase):
    """Epileptogenicity Index over each patient's seizures (0 where it has none)."""

    name = "ei"
    config: EIConfig

    def __init__(self, config: EIConfig | None = None, **params: Any) -> None:
        self.config = config or EIConfig(**params)

    def fit(self, train: CohortData, validation: CohortData | None = None) -> EIBaseline:
        """Nothing to learn."""
        return self

    def predict_proba(self, data: CohortData) -> pl.DataFrame:
        """Mean EI of every channel over its patient's seizures (0 without any)."""
        cfg = self.config
        rows: list[dict[str, Any]] = []
        for info in data.recordings():
            for x, onset in data.onset_windows(info, pre_s=cfg.pre_s, post_s=cfg.post_s,
                                               sfreq=cfg.sfreq):
                ei = baselines.epileptogenicity_index(x, cfg.sfreq, onset)
                rows.extend({"key": f"{info.site}/{info.subject}", "site": info.site,
                             "subject": info.subject, "channel": c, "score": float(v)}
                            for c, v in zip(info.channels, ei))
        frame = pl.DataFrame(rows, schema={"key": pl.String, "site": pl.String,
                                           "subject": pl.String, "channel": pl.String,
                                           "score": pl.Float64})
        scored = frame.group_by(KEY_COLUMNS).agg(pl.col("score").mean())
        table = data.features().select(KEY_COLUMNS)
        return table.join(scored, on=KEY_COLUMNS, how="left").with_columns(
            pl.col("score").fill_null(0.0))


# --------------------------------------------------------------------------- SVM
class SVMEstimator(EstimatorBase):
    """RBF SVM on per-channel spike, HFO, band-power and wavelet-packet features.

    Features are normalised within each patient first (rank percentiles, see
    :meth:`features`; the key step for cross-patient and cross-centre generalisation,
    models.md §4.3), then standardised on the training fold;
    ``class_weight="balanced"``; C and gamma by an inner GroupKFold over patients, scored by
    ROC AUC (:class:`~sozstore.models.configs.SVMConfig`). Scores are the decision function.
    """

    name = "svm"
    config: SVMConfig
    columns_: list[str]
    best_params_: dict[str, Any]
    arrays_: dict[str, NDArray[Any]]

    def __init__(self, config: SVMConfig | None = None, **params: Any) -> None:
        self.config = config or SVMConfig(**params)

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

    def fit(self, train: CohortData, validation: CohortData | None = None) -> SVMEstimator:
        """Grid search over C and gamma on the labelled channels of ``train`` (the
        validation patients are not used: the inner folds choose)."""
        cfg = self.config
        table = train.channels().filter(pl.col("soz").is_not_null())
        x, self.columns_ = self.features(table)
        y = table["soz"].to_numpy().astype(int)
        groups = table["key"].to_numpy()
        n_inner = min(cfg.inner_folds, len(set(groups)))
        if n_inner < 2:  # one patient: nothing to cross-validate over, middle of the grid
            self.best_params_ = {"svc__C": cfg.C[len(cfg.C) // 2],
                                 "svc__gamma": cfg.gamma[0]}
            self.pipeline_ = make_pipeline(StandardScaler(), SVC(
                kernel="rbf", class_weight="balanced", C=self.best_params_["svc__C"],
                gamma=self.best_params_["svc__gamma"])).fit(x, y)
            self._keep_arrays(x)
            return self
        search = GridSearchCV(
            make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced")),
            {"svc__C": list(cfg.C), "svc__gamma": list(cfg.gamma)},
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

    def predict_proba(self, data: CohortData) -> pl.DataFrame:
        """The decision function of every channel of ``data``."""
        table = data.features()
        x, columns = self.features(table)
        if columns != self.columns_:  # another store's feature versions: say so, never misalign
            raise ValueError(f"channel features {columns} differ from the ones the "
                             f"SVM was trained on {self.columns_}")
        return scores_frame(table, self.decision_function(x))

    def _export_learned(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        return ({"columns": list(self.columns_), "best_params": self.best_params_},
                {f"svm.{k}": np.asarray(v) for k, v in self.arrays_.items()})

    def _import_learned(self, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> None:
        self.columns_ = list(meta["columns"])
        self.best_params_ = meta["best_params"]
        self.arrays_ = {k[len("svm."):]: v for k, v in arrays.items() if k.startswith("svm.")}


# --------------------------------------------------------------------------- stacking
def within_patient_rank(frame: pl.DataFrame, column: str) -> pl.Series:
    """``column`` as a rank percentile in (0, 1) within each patient (``key``).

    Ties share their mean rank; missing values sit at the middle (0.5). Ranks make scores of
    different models and patients commensurable: a combiner then learns how much each
    ranking is worth, not each model's scale.
    """
    rank = (pl.col(column).rank("average").over("key") - 0.5) / pl.len().over("key")
    return frame.select(rank.fill_nan(0.5).fill_null(0.5).alias(column))[column]


class StackedEstimator(EstimatorBase):
    """Logistic regression over the within-patient ranks of other models' scores.

    The base models (learned ones and clinical baselines) score every training patient out
    of fold: the patients are split into ``inner_folds`` patient-wise folds and each learned
    base is fitted on the others, so the combiner never sees a score that a base model
    produced for a patient it was trained on (Wolpert's stacked generalisation; a combiner
    fitted on in-sample scores would trust the most over-fitted base). Baselines that learn
    nothing score every patient directly (once per opened store, see
    :meth:`CohortData.memoised_scores`). The combiner is an L2-regularised logistic
    regression with balanced class weights on the per-patient rank percentiles of the base
    scores; at prediction time the bases are refitted on all training patients (early
    stopping on the validation patients) and their ranks combined with the learned weights.
    Hyper-parameters: :class:`~sozstore.models.configs.StackConfig`.
    """

    name = "stack"
    config: StackConfig
    weights_: dict[str, float]
    arrays_: dict[str, NDArray[Any]]
    fitted_: dict[str, Any]

    def __init__(self, config: StackConfig | None = None, **params: Any) -> None:
        self.config = config or StackConfig(**params)

    @property
    def bases(self) -> tuple[str, ...]:
        """Zoo names of the base models."""
        return self.config.bases

    def _base(self, name: str) -> Any:
        from sozstore.models.registry import build_estimator

        return build_estimator(name, self.config.base_configs.get(name))

    @staticmethod
    def _learned(name: str) -> bool:
        from sozstore.models.registry import REGISTRY

        return REGISTRY[name].learned

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

    def fit(self, train: CohortData, validation: CohortData | None = None
            ) -> StackedEstimator:
        """Out-of-fold base scores of the labelled patients of ``train`` and
        ``validation``, the combiner on their ranks, then every base refitted on
        ``train`` (early stopping on ``validation``)."""
        from sklearn.linear_model import LogisticRegression

        cfg = self.config
        both = train.union(validation)
        val_keys = set(validation.keys) if validation is not None else set()
        truth = both.channels().select(KEY_COLUMNS + ["soz"])
        # only labelled patients can weigh the bases (and train a learned base)
        labelled = set(truth.filter(pl.col("soz").is_not_null())["key"])
        keys = sorted(set(both.keys) & labelled)
        if len(keys) < 2:
            raise ValueError("stack needs at least two labelled training patients")
        rng = np.random.default_rng(cfg.seed)
        order = [keys[i] for i in rng.permutation(len(keys))]
        n_inner = max(2, min(cfg.inner_folds, len(keys)))
        inner = [order[k::n_inner] for k in range(n_inner)]
        oof: dict[str, pl.DataFrame] = {}
        for name in self.bases:
            if not self._learned(name):
                oof[name] = self._baseline_scores(name, both.subset(keys))
                continue
            parts = []
            for k, held in enumerate(inner):
                rest = [key for j, part in enumerate(inner) if j != k for key in part]
                est = self._base(name)
                if isinstance(est, TorchEstimator):  # early stopping needs its own patients
                    inner_val = [key for key in rest if key in val_keys] or rest[:1]
                    inner_fit = [key for key in rest if key not in set(inner_val)] or rest
                else:
                    inner_fit, inner_val = rest, []
                est.fit(both.subset(inner_fit), both.subset(inner_val) if inner_val else None)
                parts.append(est.predict_proba(both.subset(held)))
            oof[name] = pl.concat(parts)
        table = self._ranked(oof)
        fitted = table.join(truth, on=KEY_COLUMNS).filter(pl.col("soz").is_not_null())
        x = fitted.select(self.bases).to_numpy()
        y = fitted["soz"].to_numpy().astype(int)
        self.combiner_ = LogisticRegression(C=cfg.C, class_weight="balanced", max_iter=1000)
        if 0 < y.sum() < y.size:
            self.combiner_.fit(x, y)
        else:  # no labels to weigh the bases: equal weights (the mean rank)
            self.combiner_.fit(np.vstack([np.zeros(len(self.bases)), np.ones(len(self.bases))]),
                               [0, 1])
        self.weights_ = dict(zip(self.bases, self.combiner_.coef_[0].tolist()))
        self.arrays_ = {"coef": self.combiner_.coef_[0], "intercept": self.combiner_.intercept_}
        logger.info("stack: combiner weights %s on %d channels of %d patients",
                    {k: round(v, 3) for k, v in self.weights_.items()}, fitted.height,
                    len(keys))
        self.fitted_ = {name: (self._base(name).fit(train, validation)
                               if self._learned(name) else self._base(name))
                        for name in self.bases}
        return self

    def _baseline_scores(self, name: str, data: CohortData) -> pl.DataFrame:
        """Scores of a baseline that learns nothing (memoised with the opened store: a
        baseline scores each patient from that patient's recordings alone, so its scores
        are the same in every fold)."""
        return data.memoised_scores(name, self.config.base_configs.get(name),
                                    self._base(name).predict_proba)

    def predict_proba(self, data: CohortData) -> pl.DataFrame:
        """The combiner's score of the base models' within-patient ranks."""
        table = self._ranked({name: (est.predict_proba(data) if self._learned(name)
                                     else self._baseline_scores(name, data))
                              for name, est in self.fitted_.items()})
        x = table.select(self.bases).to_numpy()
        return scores_frame(table, x @ self.arrays_["coef"] + self.arrays_["intercept"][0])

    def _export_learned(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        from sozstore.models.checkpoint import estimator_state

        meta: dict[str, Any] = {"weights": self.weights_, "fitted": {}}
        arrays = {f"stack.{k}": np.asarray(v) for k, v in self.arrays_.items()}
        for base, est in self.fitted_.items():
            sub_meta, sub_arrays = estimator_state(est)
            meta["fitted"][base] = sub_meta
            arrays.update({f"base.{base}.{k}": v for k, v in sub_arrays.items()})
        return meta, arrays

    def _import_learned(self, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> None:
        from sozstore.models.checkpoint import estimator_from_state

        self.weights_ = meta["weights"]
        self.arrays_ = {k[len("stack."):]: v for k, v in arrays.items()
                        if k.startswith("stack.")}
        self.fitted_ = {}
        for base, sub_meta in meta["fitted"].items():
            prefix = f"base.{base}."
            self.fitted_[base] = estimator_from_state(
                sub_meta, {k[len(prefix):]: v for k, v in arrays.items()
                           if k.startswith(prefix)})


# --------------------------------------------------------------------------- torch models
class TorchEstimator(EstimatorBase):
    """Train one of the networks with early stopping on the validation patients.

    The loss is the class-balanced focal BCE (``gamma``, ``beta``) whose class counts are
    unique (patient, channel) pairs of the training patients, not channel x window
    instances (with beta = 0.999 the latter saturate to no rebalancing, models.md §5.1);
    the realised weights are logged. SZLoc uses its own multi-task loss. Channel scores are
    the mean sigmoid over all windows of a patient.

    Parameters
    ----------
    name : {"sozformer", "dcgru", "szloc"}
        The network.
    config : TorchConfig, optional
        Training settings (the model's own config class, e.g.
        :class:`~sozstore.models.configs.DCGRUConfig`; its defaults when omitted).
    progress : bool
        A progress bar per epoch on stderr with the validation patient-AUROC (not a
        hyper-parameter: it changes nothing that is learned).
    """

    config: TorchConfig
    model_: torch.nn.Module
    history_: list[dict[str, float]]
    weights_: tuple[float, float]

    def __init__(self, name: str, config: TorchConfig | None = None, *,
                 progress: bool = False) -> None:
        if config is None:
            from sozstore.models.registry import parse_model_config

            parsed = parse_model_config(name, None)
            if not isinstance(parsed, TorchConfig):
                raise ValueError(f"{name!r} is not a torch model")
            config = parsed
        self.name = name
        self.config = config
        self.progress = progress

    # -- plumbing
    def _device(self) -> torch.device:
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    def _dataset(self, data: CohortData, *, train: bool) -> Any:
        recs = data.recordings()
        kw: dict[str, Any] = dict(seed=self.config.seed, shuffle=train, random_offsets=train,
                                  equalize=train and torch.distributed.is_initialized())
        if self.name in ("sozformer", "dcgru"):
            kw["augment"] = train and self.config.augment
        if not train:
            # every rank predicts every window, so early stopping decides the same everywhere
            kw.update(rank=0, world_size=1)
        if self.name == "sozformer":
            return data.clip_dataset(recs, n_clips=self.config.n_clips, **kw)
        if self.name == "dcgru":
            return data.graph_dataset(recs, n_steps=self.config.n_steps, **kw)
        if self.name == "szloc":
            return data.raw_dataset(recs, n_steps=self.config.raw_steps, **kw)
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
        batch = batch_to_device(batch, device)  # once, asynchronous from pinned memory
        logits, out = self._forward(net, batch, device)
        loss = self._loss(logits, out, batch, device)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return loss

    # -- estimator API
    def fit(self, train: CohortData, validation: CohortData | None = None
            ) -> TorchEstimator:
        """Train on ``train`` with early stopping on ``validation``; with a ``search`` in
        the config, train every candidate and keep the best on the validation patients."""
        if not self.config.search:
            return self._fit_once(train, validation)
        candidates = search_candidates(self.config, seed=self.config.seed)
        base = self.config
        self.search_results_: list[dict[str, Any]] = []
        best_score, best_fit = -np.inf, None
        for params in candidates:
            self.config = apply_params(base, params)
            self._fit_once(train, validation)
            score = max((h["val_auroc"] for h in self.history_), default=float("nan"))
            self.search_results_.append({"params": params, "val_auroc": score})
            logger.info("%s search %s: validation patient-AUROC %.3f", self.name, params, score)
            if best_fit is None or (np.isfinite(score) and score > best_score):
                best_score = score if np.isfinite(score) else -np.inf
                best_fit = (params, self.config, self.model_, self.history_, self.weights_)
        assert best_fit is not None
        self.best_params_, self.config, self.model_, self.history_, self.weights_ = best_fit
        return self

    def _fit_once(self, train: CohortData, validation: CohortData | None
                  ) -> TorchEstimator:
        from sozstore.models.nn.losses import class_balanced_weights

        cfg = self.config
        torch.manual_seed(cfg.seed)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        device = self._device()
        counted = train.channels().filter(pl.col("soz").is_not_null())
        n_pos = int(counted["soz"].sum())
        self.weights_ = class_balanced_weights(counted.height - n_pos, n_pos, beta=cfg.beta)
        logger.info("%s: class weights (neg, pos) = %s from %d unique patient-channels",
                    self.name, self.weights_, counted.height)
        # early stopping sees the validation data's targets, which the experiment gives the
        # same labels as training (shuffled ones in a leak control)
        has_validation = validation is not None and len(validation) > 0
        train_ds = self._dataset(train, train=True)
        model = self._build(getattr(train_ds, "n_features", 0)).to(device)
        if self.name in ("dcgru", "sozformer") and cfg.pretrain_epochs > 0:
            # self-supervised: every recording that is not a held-out test patient's,
            # labelled or not (patients without any label only ever help here)
            pretrain = train.union(validation).union(train.unlabelled())
            self._pretrain(model, self._dataset(pretrain, train=True), device)
        ddp = torch.distributed.is_available() and torch.distributed.is_initialized()
        net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loader = make_loader(train_ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                             pin_memory=device.type == "cuda")
        total_steps = max(1, cfg.epochs * max(1, math.ceil(len(train_ds) / cfg.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps
                                                    + 1, pct_start=0.05)
        best, best_state, stale = -np.inf, copy.deepcopy(model.state_dict()), 0
        self.history_ = []
        # progress on stderr only (rank 0 under torchrun); nothing of it reaches results
        epochs = tqdm(range(cfg.epochs), desc=f"{self.name} epochs", unit="epoch",
                      file=sys.stderr, leave=False, dynamic_ncols=True,
                      disable=not self.progress or (ddp and torch.distributed.get_rank() > 0))
        for epoch in epochs:
            t0 = time.perf_counter()
            train_ds.set_epoch(epoch)
            net.train()
            # the epoch's losses add up on the device and are read once (a read per step
            # waits for the device every step)
            loss_sum, n_steps = _loss_accumulator(device), 0
            for b, batch in enumerate(loader):
                if cfg.max_batches_per_epoch and b >= cfg.max_batches_per_epoch:
                    break
                loss = self.train_step(net, opt, batch, device)
                if sched.last_epoch < total_steps:
                    sched.step()
                loss_sum += loss.detach()
                n_steps += 1
            mean_loss = float(loss_sum) / n_steps if n_steps else float("nan")
            self.model_ = model
            score = (self._validation_auroc(validation) if has_validation and validation
                     is not None else -mean_loss)
            self.history_.append({"epoch": epoch, "loss": mean_loss, "val_auroc": score,
                                  "seconds": time.perf_counter() - t0})
            logger.info("%s epoch %d loss %.4f val patient-AUROC %.3f", self.name, epoch,
                        self.history_[-1]["loss"], score)
            epochs.set_postfix(loss=f"{self.history_[-1]['loss']:.4f}",
                               **({"val_auroc": f"{score:.3f}"} if has_validation else {}))
            if score > best + 1e-4:
                best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        epochs.close()
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

        keys = ("hidden", "n_layers", "k_hops", "dropout", "top_k")
        forecaster = DCGRUForecaster(dataset.n_features, **{k: v for k, v in
                                                            self.config.model.items()
                                                            if k in keys}).to(device)
        opt = torch.optim.Adam(forecaster.parameters(), lr=1e-3)
        self._pretrain_loop(dataset, device, opt, lambda batch: forecaster.loss(
            batch["x"], batch["adj"], batch["mask"]),
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
        self._pretrain_loop(dataset, device, opt, lambda batch: masked_reconstruction_loss(
            model, head, batch["x"], batch["mask"],  # type: ignore[arg-type]
            fraction=cfg.mask_fraction, generator=gen),
            label="sozformer pretrain masked-clip", clip=params)

    def _pretrain_loop(self, dataset: Any, device: torch.device, opt: torch.optim.Optimizer,
                       loss_of: Callable[[dict[str, Any]], torch.Tensor], *, label: str,
                       clip: list[torch.Tensor] | None = None) -> None:
        """The epochs of a self-supervised task: ``loss_of(batch)`` (the batch already on
        ``device``) minimised with ``opt`` (gradient norm clipped at 1 over ``clip`` when
        given); the mean loss per epoch is kept in ``pretrain_history_``."""
        cfg = self.config
        loader = make_loader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                             pin_memory=device.type == "cuda")
        self.pretrain_history_ = []
        for epoch in range(cfg.pretrain_epochs):
            dataset.set_epoch(1000 + epoch)
            loss_sum, n_steps = _loss_accumulator(device), 0
            for b, batch in enumerate(loader):
                if cfg.max_batches_per_epoch and b >= cfg.max_batches_per_epoch:
                    break
                loss = loss_of(batch_to_device(batch, device))
                opt.zero_grad()
                loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(clip, 1.0)
                opt.step()
                loss_sum += loss.detach()
                n_steps += 1
            self.pretrain_history_.append(float(loss_sum) / n_steps if n_steps
                                          else float("nan"))
            logger.info("%s epoch %d loss %.4f", label, epoch, self.pretrain_history_[-1])

    def _validation_auroc(self, validation: CohortData) -> float:
        """Mean per-patient AUROC of the current network on ``validation`` (its labels)."""
        from sklearn.metrics import roc_auc_score

        pred = self.predict_proba(validation)
        table = validation.channels().select(KEY_COLUMNS + ["soz"])
        joined = pred.join(table, on=KEY_COLUMNS).filter(pl.col("soz").is_not_null())
        aucs = []
        for _, g in joined.group_by("key"):
            y = g["soz"].to_numpy().astype(bool)
            if 0 < y.sum() < y.size:
                aucs.append(roc_auc_score(y, g["score"].to_numpy()))
        return float(np.mean(aucs)) if aucs else float("nan")

    @torch.no_grad()
    def predict_proba(self, data: CohortData, *,
                      recording_ids: list[str] | None = None) -> pl.DataFrame:
        """Mean sigmoid of every channel over all windows of its patient's recordings
        (only the recordings ``recording_ids`` when given)."""
        device = self._device()
        ds = self._dataset(data, train=False)
        if recording_ids is not None:
            ds.recordings = [r for r in ds.recordings if r.recording_id in recording_ids]
        self.model_.eval()
        sums: dict[tuple[str, str, str], list[float]] = {}
        for batch in make_loader(ds, batch_size=self.config.batch_size,
                                 pin_memory=device.type == "cuda"):
            logits, _ = self._forward(self.model_, batch_to_device(batch, device), device)
            prob = torch.sigmoid(logits).cpu().numpy()
            for i, meta in enumerate(batch["meta"]):
                for j, channel in enumerate(meta["channels"]):
                    sums.setdefault((meta["site"], meta["subject"], channel), []).append(
                        float(prob[i, j]))
        rows = [{"key": f"{s}/{sub}", "site": s, "subject": sub, "channel": c,
                 "score": float(np.mean(v))} for (s, sub, c), v in sums.items()]
        table = data.features().select(KEY_COLUMNS)
        frame = pl.DataFrame(rows, schema={"key": pl.String, "site": pl.String,
                                           "subject": pl.String, "channel": pl.String,
                                           "score": pl.Float64})
        return table.join(frame, on=KEY_COLUMNS, how="left")

    def _export_learned(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        meta = {"model_config": self.model_.get_config(),  # type: ignore[operator]
                "weights": list(getattr(self, "weights_", ()))}
        return meta, {f"model.{k}": v.detach().cpu().numpy()
                      for k, v in self.model_.state_dict().items()}

    def _import_learned(self, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> None:
        from sozstore.models.nn.registry import build_model

        self.model_ = build_model(self.name, meta["model_config"])
        self.model_.load_state_dict({k[len("model."):]: torch.from_numpy(v.copy())
                                     for k, v in arrays.items() if k.startswith("model.")})
        self.weights_ = tuple(meta.get("weights", ()))


def _loss_accumulator(device: torch.device) -> torch.Tensor:
    """A zero on ``device`` that an epoch's losses are added to (float64 where the device
    has it, as the mean of the per-step Python floats it replaces was)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    return torch.zeros((), dtype=dtype, device=device)


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
    """A copy of ``config`` with ``params`` set (``model.NAME`` sets a network argument),
    validated by its class; the copy has no search of its own."""
    fields_ = config.model_dump()
    model = dict(fields_.pop("model"))
    for name, value in params.items():
        if name.startswith("model."):
            model[name[len("model."):]] = value
        elif name in fields_ and name not in ("search", "search_budget"):
            fields_[name] = value
        else:
            raise ValueError(f"unknown search parameter {name!r}")
    fields_.update(model=model, search={})
    return type(config).model_validate(fields_)


def estimator_config(estimator: Any) -> dict[str, Any]:
    """The resolved config of an estimator for the runs table: its zoo name and every
    hyper-parameter, defaults included."""
    return {"name": estimator.name, **estimator.get_params()}


def threshold_on_validation(val_pred: pl.DataFrame, labels: pl.DataFrame) -> float:
    """Youden's J threshold from validation patients' channels (never test)."""
    joined = val_pred.join(labels, on=KEY_COLUMNS).filter(pl.col("soz").is_not_null()
                                                          & pl.col("score").is_finite())
    return youden_threshold(joined["soz"].to_numpy(), joined["score"].to_numpy())
