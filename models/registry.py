"""Every model of the zoo, once: name, kind, description, config class, sizes and builder.

Adding a model is one :class:`ModelSpec` in :data:`REGISTRY`: the CLI's model list and help
text, the validation of ``--config`` files, the demo's and the evidence runs' sizes, the
stack's bases and checkpoint loading all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from sozstore.models.configs import (
    ConfigError,
    DCGRUConfig,
    EIConfig,
    FragilityConfig,
    ModelConfig,
    RateConfig,
    SOZFormerConfig,
    StackConfig,
    SVMConfig,
    SZLocConfig,
    TorchConfig,
    did_you_mean,
)

if TYPE_CHECKING:  # the estimators' modules load polars, torch and the store readers
    from sozstore.models.estimator import Estimator

Kind = Literal["baseline", "learned", "stack"]


@dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo.

    Parameters
    ----------
    name : str
        Zoo name (``sozstore train NAME``).
    kind : {"baseline", "learned", "stack"}
        Baselines learn nothing; learned models fit on the training patients; the stack
        fits other models out of fold.
    description : str
        One line for ``--help``.
    config_class : type of ModelConfig
        Its hyper-parameters (pydantic, unknown keys refused).
    builder : callable
        ``builder(config) -> Estimator``.
    demo, full : dict
        Config overrides of the quick demo and of the evidence runs (``--full-size``).
    """

    name: str
    kind: Kind
    description: str
    config_class: type[ModelConfig]
    builder: Callable[[Any], Estimator]
    demo: dict[str, Any] = field(default_factory=dict)
    full: dict[str, Any] = field(default_factory=dict)

    @property
    def learned(self) -> bool:
        """Whether the model learns from the training patients."""
        return self.kind != "baseline"

    def parse(self, raw: Mapping[str, Any] | None, *, source: str = "config") -> ModelConfig:
        """``raw`` validated against :attr:`config_class` (see :func:`parse_model_config`)."""
        return parse_model_config(self.name, raw, source=source)

    def build(self, config: ModelConfig | Mapping[str, Any] | None = None) -> Estimator:
        """A fresh estimator with ``config`` (validated first when it is a mapping)."""
        if not isinstance(config, ModelConfig):
            config = self.parse(config)
        elif not isinstance(config, self.config_class):
            raise TypeError(f"{self.name} takes a {self.config_class.__name__}, "
                            f"not a {type(config).__name__}")
        return self.builder(config)

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the model's config."""
        return self.config_class.model_json_schema()


def _torch(name: str) -> Callable[[Any], Estimator]:
    def build(config: Any) -> Estimator:
        from sozstore.models.zoo import TorchEstimator

        return TorchEstimator(name, config)
    return build


def _rate(name: Literal["spike_rate", "hfo_rate"]) -> Callable[[Any], Estimator]:
    def build(config: Any) -> Estimator:
        from sozstore.models.zoo import RateBaseline

        return RateBaseline(name, config)
    return build


def _svm(config: Any) -> Estimator:
    from sozstore.models.zoo import SVMEstimator

    return SVMEstimator(config)


def _stack(config: Any) -> Estimator:
    from sozstore.models.zoo import StackedEstimator

    return StackedEstimator(config)


def _ei(config: Any) -> Estimator:
    from sozstore.models.zoo import EIBaseline

    return EIBaseline(config)


def _fragility(config: Any) -> Estimator:
    from sozstore.models.fragility import FragilityBaseline

    return FragilityBaseline(config)


#: The zoo, in the order the CLI and the demo list it. Demo sizes: the networks shrunk so
#: every model trains in about a minute on two CPU cores; full sizes (the evidence runs):
#: the published defaults, fewer epochs.
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec(
        "sozformer", "learned", "transformer over per-clip features of every channel",
        SOZFormerConfig, _torch("sozformer"),
        demo={"model": {"d_model": 32, "n_heads": 4, "n_temporal_layers": 1,
                        "n_spatial_layers": 1, "dim_feedforward": 64},
              "epochs": 8, "n_clips": 8, "batch_size": 8, "patience": 4, "threads": 1,
              "pretrain_epochs": 2},
        full={"epochs": 25, "n_clips": 12, "batch_size": 8, "patience": 6}),
    ModelSpec(
        "dcgru", "learned", "diffusion-convolutional GRU on channel-correlation graphs",
        DCGRUConfig, _torch("dcgru"),
        demo={"model": {"hidden": 32, "n_layers": 1}, "epochs": 8, "n_steps": 6,
              "batch_size": 8, "pretrain_epochs": 2, "patience": 4, "threads": 1},
        full={"model": {"hidden": 64, "n_layers": 2}, "epochs": 20, "n_steps": 12,
              "pretrain_epochs": 5, "patience": 6}),
    ModelSpec(
        "szloc", "learned", "transformer on raw signal around seizure onsets",
        SZLocConfig, _torch("szloc"),
        demo={"model": {"d_model": 32, "n_heads": 4, "dim_feedforward": 64}, "epochs": 3,
              "raw_steps": 45, "batch_size": 4, "patience": 2, "threads": 1},
        full={"epochs": 10, "raw_steps": 45, "batch_size": 4, "patience": 4}),
    ModelSpec(
        "svm", "learned", "RBF SVM on within-patient ranks of spike, HFO and wavelet features",
        SVMConfig, _svm),
    ModelSpec(
        "stack", "stack", "logistic regression over other models' out-of-fold score ranks",
        StackConfig, _stack),
    ModelSpec(
        "spike_rate", "baseline", "interictal spike rate, z-scored per patient",
        RateConfig, _rate("spike_rate")),
    ModelSpec(
        "hfo_rate", "baseline", "ripple + fast-ripple rate, z-scored per patient",
        RateConfig, _rate("hfo_rate")),
    ModelSpec(
        "ei", "baseline", "Epileptogenicity Index over each patient's seizures",
        EIConfig, _ei),
    ModelSpec(
        "fragility", "baseline", "neural fragility around each seizure onset",
        FragilityConfig, _fragility),
)}


def model_names(kind: Kind | None = None) -> tuple[str, ...]:
    """Zoo names in registry order, of one ``kind`` when given."""
    return tuple(n for n, s in REGISTRY.items() if kind is None or s.kind == kind)


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; a :class:`ConfigError` naming the known models otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, list(REGISTRY))}; "
                          f"known: {', '.join(REGISTRY)}") from None


def _describe(error: Any, model: str) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "extra_forbidden":
        config_class = REGISTRY[model].config_class
        known = list(config_class.model_fields)
        if issubclass(config_class, TorchConfig):  # a network argument given at top level
            known += [f"model.{a}" for a in config_class.network_arguments() or []]
        return (f"unknown hyper-parameter {loc!r} for model {model}"
                f"{did_you_mean(str(error['loc'][-1]), known)}")
    if error["type"] == "unknown_network_argument":
        hint = f" (did you mean '{loc}.{ctx['close']}'?)" if ctx.get("close") else ""
        return f"unknown hyper-parameter '{loc}.{ctx['name']}' for model {model}{hint}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return f"model {model}: {msg}"
    got = error.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return f"hyper-parameter {loc!r} for model {model}: {msg}{shown}"


def parse_model_config(model: str, raw: Mapping[str, Any] | BaseModel | None, *,
                       source: str = "config") -> ModelConfig:
    """Validate ``raw`` against the config class of ``model``.

    Parameters
    ----------
    model : str
        Zoo name.
    raw : mapping, ModelConfig or None
        The settings (e.g. a ``--config`` file's content); ``None``: the defaults. A config
        object of the right class is returned as it is.
    source : str
        What the settings came from (a file name), the start of every message.

    Raises
    ------
    ConfigError
        One line: ``config.json: unknown hyper-parameter 'lerning_rate' for model
        sozformer (did you mean 'lr'?)``, or the value that failed and why.
    """
    spec = get_spec(model)
    if isinstance(raw, spec.config_class):
        return raw
    if isinstance(raw, BaseModel):
        raise ConfigError(f"{source}: a {type(raw).__name__} is not a config of model "
                          f"{model} ({spec.config_class.__name__})")
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the config of model {model} must be a table of "
                          f"hyper-parameters, not {type(raw).__name__}")
    try:
        return spec.config_class.model_validate(dict(raw or {}))
    except ValidationError as err:
        lines = [_describe(e, model) for e in err.errors()]
        raise ConfigError(f"{source}: {'; '.join(lines)}") from None


def build_estimator(model: str, config: Mapping[str, Any] | ModelConfig | None = None,
                    *, source: str = "config") -> Estimator:
    """A fresh estimator of ``model`` with ``config`` validated (the defaults when None)."""
    return get_spec(model).build(parse_model_config(model, config, source=source))
