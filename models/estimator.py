"""What every model of the zoo is (:class:`Estimator`) and what it is given (:class:`CohortData`).

Estimators follow the scikit-learn spirit: explicit parameters (a validated config,
:mod:`sozstore.models.configs`), ``fit`` on training data, ``predict_proba`` on other data,
and no I/O of their own. The experiment (:mod:`sozstore.models.experiment`) opens the store
once and hands the estimators a :class:`CohortData`: the channel feature table, the
recordings, and factories for the streaming datasets and peri-ictal signal windows, all
bound to that store. An estimator
therefore never sees a store path, only frames, recordings and datasets of the patients it
was given (``CohortData.subset`` and ``CohortData.union`` stay inside them; only
``CohortData.unlabelled`` reaches the patients without a single SOZ label, which carry no
clinician metric and serve self-supervised pretraining).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import numpy as np
import polars as pl
from numpy.typing import NDArray

from sozstore.models.inputs import (
    RecordingInfo,
    channel_table,
    onset_windows,
    recording_table,
    subject_keys,
)
from sozstore.store import Store, StoreLike
from sozstore.store._docs import fill_doc

if TYPE_CHECKING:
    from sozstore.models.configs import ModelConfig
    from sozstore.models.datasets import ClipSequenceDataset, GraphSequenceDataset, RawWindowDataset

#: Columns that identify a channel of a patient in every frame of the zoo.
KEY_COLUMNS = ["key", "site", "subject", "channel"]

class _Shared:
    """State shared by a cohort and every subset of it (one per opened store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: (model name, config JSON, patient key) -> that patient's scores of a baseline
        #: that learns nothing (see :meth:`CohortData.memoised_scores`).
        self.scores: dict[tuple[str, str, str], pl.DataFrame] = {}
        self.all_keys: tuple[str, ...] | None = None
        self.unlabelled: tuple[str, ...] | None = None


@fill_doc
class CohortData:
    """Patients of one store as the estimators see them.

    Built by the experiment (:meth:`from_store`); estimators read the channel table, the
    recordings and the datasets through it and never open the store themselves.

    Parameters
    ----------
    %(store)s
        The data functions read from it; it is never handed to an estimator.
    keys : sequence of str, optional
        Patients (``site/subject``) of this view; all patients of the store when omitted.
    labels : polars.DataFrame, optional
        SOZ labels (site, subject, channel, soz) replacing the clinicians' ones, e.g. the
        shuffled labels of a leak control; they reach the channel table's ``soz`` column
        and the recordings' per-channel targets.
    """

    def __init__(self, store: StoreLike, keys: Sequence[str] | None = None, *,
                 labels: pl.DataFrame | None = None, _shared: _Shared | None = None) -> None:
        self._shared = _shared if _shared is not None else _Shared(Store.open(store))
        self._labels = labels
        self.keys: tuple[str, ...] = (self._all_keys() if keys is None
                                      else tuple(dict.fromkeys(keys)))

    @classmethod
    def from_store(cls, store: StoreLike, *, labels: pl.DataFrame | None = None
                   ) -> CohortData:
        """Every patient of ``store`` (with ``labels`` replacing the clinicians')."""
        return cls(store, labels=labels)

    def with_labels(self, labels: pl.DataFrame | None) -> CohortData:
        """The same patients with ``labels`` replacing the clinicians' (``None``: theirs).

        For the experiment (a leak control's shuffled labels per fold); the memo of
        :meth:`memoised_scores` stays shared, as labels never change a prediction.
        """
        return CohortData(self._shared.store, self.keys, labels=labels, _shared=self._shared)

    def __repr__(self) -> str:
        return (f"CohortData({len(self.keys)} patients"
                f"{', replaced labels' if self._labels is not None else ''})")

    def __len__(self) -> int:
        return len(self.keys)

    # -- selecting patients
    def _all_keys(self) -> tuple[str, ...]:
        if self._shared.all_keys is None:
            self._shared.all_keys = tuple(subject_keys(self._shared.store)["key"])
        return self._shared.all_keys

    def _view(self, keys: Iterable[str]) -> CohortData:
        return CohortData(self._shared.store, list(keys), labels=self._labels,
                          _shared=self._shared)

    def subset(self, keys: Iterable[str]) -> CohortData:
        """The patients ``keys`` of this view (same labels, same store).

        Raises
        ------
        KeyError
            If a key is not a patient of this view (an estimator cannot reach patients it
            was not given).
        """
        keys = list(keys)
        unknown = sorted(set(keys) - set(self.keys))
        if unknown:
            raise KeyError(f"patients {unknown} are not part of this data")
        return self._view(keys)

    def union(self, other: CohortData | None) -> CohortData:
        """The patients of both views (``self``'s labels); ``other`` must share the store."""
        if other is None:
            return self
        if other._shared is not self._shared:
            raise ValueError("cannot join patients of two different stores")
        return self._view([*self.keys, *other.keys])

    def unlabelled(self) -> CohortData:
        """Every patient of the store without a single SOZ label (clinicians' labels).

        They carry no clinician metric; their signals still teach self-supervised encoders
        what SEEG looks like (the zoo's pretraining uses them).
        """
        if self._shared.unlabelled is None:
            table = channel_table(self._shared.store)
            labelled = set(table.filter(pl.col("soz").is_not_null())["key"])
            self._shared.unlabelled = tuple(sorted(set(table["key"]) - labelled))
        return self._view(self._shared.unlabelled)

    # -- frames
    def channels(self) -> pl.DataFrame:
        """Per-channel feature table of these patients: :data:`KEY_COLUMNS`, the feature
        columns, ``soz`` (null where unknown) and ``resected``, in the store's order."""
        return channel_table(self._shared.store, labels=self._labels).filter(
            pl.col("key").is_in(list(self.keys)))

    def features(self) -> pl.DataFrame:
        """The same rows as :meth:`channels` without any label column (``soz``,
        ``resected``): what predictions may see."""
        return channel_table(self._shared.store).filter(
            pl.col("key").is_in(list(self.keys))).drop("soz", "resected")

    def recordings(self) -> list[RecordingInfo]:
        """The recordings of these patients with their model channels and targets."""
        return recording_table(self._shared.store, subjects=list(self.keys),
                               labels=self._labels)

    def sampling_rates(self) -> dict[str, float]:
        """Stored sampling rate per recording id (every recording of the store)."""
        table = self._shared.store.read("recordings").select("recording_id", "sfreq")
        return {rid: float(rate) for rid, rate in table.iter_rows()}

    # -- signals and datasets
    def onset_windows(self, info: RecordingInfo, *, pre_s: float, post_s: float,
                      sfreq: float) -> list[tuple[NDArray[np.float64], float]]:
        """Signal around each seizure onset of ``info`` (see
        :func:`sozstore.models.inputs.onset_windows`)."""
        return onset_windows(self._shared.store, info, pre_s=pre_s, post_s=post_s,
                             sfreq=sfreq)

    def clip_dataset(self, recordings: Sequence[RecordingInfo], **kwargs: Any
                     ) -> ClipSequenceDataset:
        """:class:`~sozstore.models.datasets.ClipSequenceDataset` over ``recordings``."""
        from sozstore.models.datasets import ClipSequenceDataset

        return ClipSequenceDataset(self._shared.store, recordings, **kwargs)

    def graph_dataset(self, recordings: Sequence[RecordingInfo], **kwargs: Any
                      ) -> GraphSequenceDataset:
        """:class:`~sozstore.models.datasets.GraphSequenceDataset` over ``recordings``."""
        from sozstore.models.datasets import GraphSequenceDataset

        return GraphSequenceDataset(self._shared.store, recordings, **kwargs)

    def raw_dataset(self, recordings: Sequence[RecordingInfo], **kwargs: Any
                    ) -> RawWindowDataset:
        """:class:`~sozstore.models.datasets.RawWindowDataset` over ``recordings``."""
        from sozstore.models.datasets import RawWindowDataset

        return RawWindowDataset(self._shared.store, recordings, **kwargs)

    # -- memo
    def memoised_scores(self, name: str, config: dict[str, Any] | None,
                        score: Any) -> pl.DataFrame:
        """Scores of these patients by a model that learns nothing, computed once per store.

        ``score(data)`` scores the patients of ``data`` from their own recordings alone, so
        a patient's scores are the same in every fold; the stack (EI and fragility read raw
        signal around every seizure) would otherwise recompute each patient once per fold.
        The memo lives with the opened store, so two stores never share entries; like
        :func:`~sozstore.models.inputs.channel_table` it assumes the store does not change
        while it is open.
        """
        memo = self._shared.scores
        tag = json.dumps(config, sort_keys=True, default=str)
        if not self.keys:
            return score(self)
        missing = [k for k in self.keys if (name, tag, k) not in memo]
        if missing:
            scored = score(self._view(missing))
            for k in missing:
                memo[(name, tag, k)] = scored.filter(pl.col("key") == k)
        return pl.concat([memo[(name, tag, k)] for k in self.keys])


@runtime_checkable
class Estimator(Protocol):
    """What every model and baseline of the zoo implements.

    ``fit`` learns from the training patients (early stopping, thresholds and
    hyper-parameter search only on ``validation``); ``predict_proba`` returns one row per
    (patient, channel) of ``data``: :data:`KEY_COLUMNS` and ``score`` (higher = more likely
    SOZ; a probability for the networks, a rank statistic for baselines). ``get_params``
    is the validated config as plain JSON; ``save``/``load`` write and read a checkpoint
    (safetensors + JSON, :mod:`sozstore.models.checkpoint`) without executing anything.
    """

    def fit(self, train: CohortData, validation: CohortData | None = None) -> Self:
        """Learn from ``train`` (``validation`` for early stopping and search)."""
        ...

    def predict_proba(self, data: CohortData) -> pl.DataFrame:
        """One row per channel of ``data``: :data:`KEY_COLUMNS` and ``score``."""
        ...

    def get_params(self) -> dict[str, Any]:
        """The validated config as plain JSON values."""
        ...

    def save(self, path: str | Path) -> None:
        """Write ``<path>.safetensors`` and ``<path>.json``."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read what :meth:`save` wrote."""
        ...


class EstimatorBase:
    """Shared parts of the zoo's estimators: parameters from the validated config and
    checkpoints through :mod:`sozstore.models.checkpoint`.

    Subclasses set ``name`` (their zoo name) and ``config``; those that learn something
    override :meth:`_export_learned` and :meth:`_import_learned`.
    """

    name: str
    config: ModelConfig

    def get_params(self) -> dict[str, Any]:
        """The validated config as plain JSON values."""
        return self.config.model_dump(mode="json")

    def save(self, path: str | Path) -> None:
        """Write ``<path>.safetensors`` and ``<path>.json`` (never a pickle)."""
        from sozstore.models.checkpoint import save_checkpoint

        save_checkpoint(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a checkpoint written by :meth:`save` (of this class or a subclass)."""
        from sozstore.models.checkpoint import load_checkpoint

        estimator = load_checkpoint(Path(path))
        if not isinstance(estimator, cls):
            raise TypeError(f"{path}: a {type(estimator).__name__} checkpoint, not a "
                            f"{cls.__name__}")
        return estimator

    def _export_learned(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """What was learned: JSON-able values and named arrays (nothing for baselines)."""
        return {}, {}

    def _import_learned(self, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> None:
        """Restore what :meth:`_export_learned` gave."""


def scores_frame(frame: pl.DataFrame, score: pl.Series | NDArray[Any]) -> pl.DataFrame:
    """:data:`KEY_COLUMNS` of ``frame`` with a float ``score`` column."""
    return frame.select(KEY_COLUMNS).with_columns(
        pl.Series("score", np.asarray(score, dtype=float)))
