"""Typed, validated hyper-parameters of every model of the zoo (pydantic).

Each hyper-parameter and its default are written once, here; unknown keys are refused
(``extra="forbid"``), so a misspelled key in a ``--config`` file is one clear line before any
data is loaded (:func:`sozstore.models.registry.parse_model_config` formats it), and every
class gives its JSON Schema (``SVMConfig.model_json_schema()``). Which class belongs to which
model name is the registry's business (:mod:`sozstore.models.registry`).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator, model_validator
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A model config that does not validate; the message is one line naming the file."""


#: Names other libraries use for a hyper-parameter, and what it is called here.
ALIASES = {"learning_rate": "lr", "n_epochs": "epochs", "max_epochs": "epochs",
           "early_stopping_patience": "patience"}


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` (or of the :data:`ALIASES` of
    one of them), or an empty string."""
    aliases = {alias: target for alias, target in ALIASES.items() if target in known}
    close = difflib.get_close_matches(name, [*known, *aliases], n=1, cutoff=0.6)
    return f" (did you mean {aliases.get(close[0], close[0])!r}?)" if close else ""


class ModelConfig(BaseModel):
    """Base of the model configs: unknown keys refused, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              use_attribute_docstrings=True)


class RateConfig(ModelConfig):
    """``spike_rate`` and ``hfo_rate``: no hyper-parameters (a rate, z-scored per patient)."""


class EIConfig(ModelConfig):
    """Epileptogenicity Index (``ei``)."""

    pre_s: PositiveFloat = 20.0
    """Seconds of signal before each seizure onset."""
    post_s: PositiveFloat = 25.0
    """Seconds of signal after each seizure onset."""
    sfreq: PositiveFloat = 250.0
    """Rate the peri-ictal signal is decimated to (Hz)."""


class FragilityConfig(ModelConfig):
    """Neural fragility (``fragility``; see
    :class:`sozstore.models.fragility.FragilityBaseline`)."""

    pre_s: PositiveFloat = 10.0
    """Seconds before each onset (with ``post_s`` at least 10 s in all)."""
    post_s: PositiveFloat = 10.0
    """Seconds after each onset."""
    sfreq: PositiveFloat = 1000.0
    """Target rate of the peri-ictal signal (Hz); the paper's 1 kHz."""
    window_s: PositiveFloat = 0.25
    """Sliding window of the linear fits (s)."""
    step_s: PositiveFloat = 0.125
    """Step of the sliding window (s)."""
    ridge: float = Field(1e-4, ge=0.0)
    """Relative Tikhonov penalty of each window's fit."""
    n_angles: int = Field(51, ge=1)
    """Grid of angles on the unit circle."""
    n_eig_angles: int = Field(4, ge=0)
    """Angles of the eigenvalues nearest the circle added to the grid."""
    perturbation: Literal["column", "row"] = "column"
    """The paper's column perturbation, or a row one for comparison."""
    standardise: bool = True
    """Per-channel scaling of each peri-ictal segment."""


class SVMConfig(ModelConfig):
    """RBF SVM on within-patient feature ranks (``svm``)."""

    C: tuple[PositiveFloat, ...] = Field((0.1, 1.0, 10.0), min_length=1)
    """Grid of the SVM's C (inner GroupKFold over patients)."""
    gamma: tuple[Literal["scale"] | PositiveFloat, ...] = Field(("scale", 0.01), min_length=1)
    """Grid of the RBF kernel's gamma ("scale": scikit-learn's rule)."""
    inner_folds: int = Field(3, ge=1)
    """Patient-wise folds of the inner grid search."""
    seed: int = 0
    """Seed (kept for the record; the grid search is deterministic)."""


class StackConfig(ModelConfig):
    """Logistic regression over the within-patient ranks of other models' scores (``stack``)."""

    bases: tuple[str, ...] = Field(("spike_rate", "hfo_rate", "ei", "fragility", "svm"),
                                   min_length=1)
    """Zoo names of the base models (any but ``stack``)."""
    base_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Config per base name, validated against that base's config class."""
    inner_folds: int = Field(3, ge=1)
    """Patient-wise folds for the out-of-fold scores of learned bases (at least 2 used)."""
    C: PositiveFloat = 1.0
    """Inverse L2 strength of the combiner."""
    seed: int = 0
    """Seed of the inner folds."""

    @model_validator(mode="after")
    def _known_bases(self) -> StackConfig:
        from sozstore.models.registry import REGISTRY, parse_model_config

        if "stack" in self.bases:
            raise ValueError("stack needs base models other than itself")
        for name in [*self.bases, *self.base_configs]:
            if name not in REGISTRY:
                raise ValueError(f"unknown base model {name!r}"
                                 f"{did_you_mean(name, [n for n in REGISTRY if n != 'stack'])}")
        for name, raw in self.base_configs.items():
            try:
                parse_model_config(name, raw, source="base_configs")
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return self


class TorchConfig(ModelConfig):
    """Training settings shared by the torch models (the demo shrinks them).

    Subclasses name their network (``network``, a key of
    :data:`sozstore.models.nn.registry.MODELS`, whose ``__init__`` arguments are the only
    keys ``model`` accepts) and hold their own defaults.
    """

    network: ClassVar[str | None] = None
    #: Network arguments every config of this class starts from (``model`` adds to them).
    model_defaults: ClassVar[dict[str, Any]] = {}

    model: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    """Network ``__init__`` arguments (e.g. ``d_model``, ``hidden``, ``dropout``); the
    class's ``model_defaults`` first."""
    epochs: int = Field(20, ge=1)
    """Training epochs at most (early stopping on the validation patients)."""
    batch_size: int = Field(8, ge=1)
    """Windows per batch."""
    lr: PositiveFloat = 3e-4
    """Peak learning rate (one-cycle schedule, AdamW)."""
    weight_decay: float = Field(0.01, ge=0.0)
    """AdamW weight decay."""
    gamma: float = Field(0.0, ge=0.0)
    """Focal-loss focusing parameter (0: class-balanced BCE)."""
    beta: float = Field(0.999, ge=0.0, lt=1.0)
    """Class-balancing beta over unique (patient, channel) pairs."""
    patience: int = Field(6, ge=1)
    """Epochs without a better validation patient-AUROC before stopping."""
    n_clips: int = Field(25, ge=1)
    """Clips per SOZFormer window."""
    n_steps: int = Field(12, ge=1)
    """Graph steps per DCGRU window."""
    raw_steps: int = Field(45, ge=1)
    """Raw-signal steps per SZLoc window."""
    pretrain_epochs: int = Field(5, ge=0)
    """Self-supervised pretraining epochs (DCGRU, SOZFormer; 0: none)."""
    mask_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    """Fraction of clips masked in SOZFormer's masked-reconstruction pretraining."""
    augment: bool = True
    """Random channel subsets, per-channel gains and feature noise on training windows
    (feature models; see ``models.datasets.augment_clip_features``)."""
    search: dict[str, list[Any]] = Field(default_factory=dict)
    """Hyper-parameter search on the validation patients: ``{"lr": [3e-4, 1e-3],
    "model.dropout": [0.1, 0.3]}``; ``search_budget`` combinations at most, drawn with the
    seed. Each candidate trains on the fit patients and is scored on the validation
    patients only, so in a cross-validation the outer test patients never take part."""
    search_budget: int = Field(4, ge=1)
    """Candidates of the search at most."""
    max_batches_per_epoch: int | None = Field(None, ge=1)
    """Cut every epoch after this many batches (tests, quick runs)."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes."""
    seed: int = 0
    """Seed of the initial weights and the window order."""
    device: str = "auto"
    """torch device ("auto": CUDA when available)."""
    threads: int = Field(0, ge=0)
    """torch CPU threads (0: torch's default). On a small shared machine 1 is much faster:
    bench/loader.py measured 2.9-74x slower steps with 2 threads on 2 busy cores."""

    @classmethod
    def network_arguments(cls) -> list[str] | None:
        """Keys ``model`` accepts (``None``: any, for the generic class)."""
        if cls.network is None:
            return None
        from sozstore.models.nn.registry import MODELS

        params = inspect.signature(MODELS[cls.network].__init__).parameters
        return [p for p in params if p != "self" and params[p].kind not in
                (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]

    @field_validator("model")
    @classmethod
    def _network_arguments(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = cls.network_arguments()
        if known is not None:
            for name in value:
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                    raise PydanticCustomError(
                        "unknown_network_argument", "unknown network argument {name}",
                        {"name": name, "close": close[0] if close else ""})
        return {**cls.model_defaults, **value}

    @model_validator(mode="after")
    def _search_space(self) -> TorchConfig:
        fixed = set(type(self).model_fields) - {"search", "search_budget", "model"}
        known = self.network_arguments()
        for name in self.search:
            arg = name[len("model."):] if name.startswith("model.") else None
            ok = (name in fixed if arg is None else known is None or arg in known)
            if not ok:
                choices = (sorted(fixed) + [f"model.{k}" for k in known or []])
                raise ValueError(f"unknown search parameter {name!r}"
                                 f"{did_you_mean(name, choices)}")
        return self


class SOZFormerConfig(TorchConfig):
    """SOZFormer (``sozformer``): clip-feature transformer."""

    network: ClassVar[str | None] = "sozformer"


class DCGRUConfig(TorchConfig):
    """DCGRU (``dcgru``): diffusion-convolutional GRU on clip-feature graphs.

    Defaults measured on generated cohorts: the DCGRU does not learn in 10 epochs at 3e-4,
    and its mean readout over steps beats the last state on 5-s steps.
    """

    network: ClassVar[str | None] = "dcgru"
    model_defaults: ClassVar[dict[str, Any]] = {"readout": "mean"}

    lr: PositiveFloat = 1e-3
    """Peak learning rate (one-cycle schedule, AdamW)."""


class SZLocConfig(TorchConfig):
    """SZLoc (``szloc``): raw-signal transformer around seizure onsets."""

    network: ClassVar[str | None] = "szloc"

    lr: PositiveFloat = 1e-4
    """Peak learning rate (one-cycle schedule, AdamW)."""
    batch_size: int = Field(4, ge=1)
    """Windows per batch."""
