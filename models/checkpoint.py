"""Checkpoints of fitted estimators: safetensors (arrays) + JSON (everything else).

Never a pickle: loading a checkpoint must not run code that the file names (``torch.load``
and ``pickle.load`` can), and safetensors holds nothing but tensors. A checkpoint names its
estimator class, which must be one of :data:`CHECKPOINT_CLASSES`, and its zoo model, whose
:class:`~sozstore.models.registry.ModelSpec` rebuilds it from the stored (validated)
parameters; what it learned is restored from plain arrays and values by the estimator's
``_import_learned``. Nothing else is constructed from a file.

Layout: ``<path>.json`` holds ``format`` (:data:`CHECKPOINT_FORMAT`), ``class``, ``model``,
``params`` (the estimator's ``get_params()``) and the learned values that are not arrays;
``<path>.safetensors`` holds the named arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sozstore.store.atomic import write_bytes_atomic

#: Version of the checkpoint layout (``<fold>.safetensors`` + ``<fold>.json``).
CHECKPOINT_FORMAT = "sozstore-checkpoint-1"
#: Estimator classes a checkpoint may name (nothing else is ever constructed from one).
CHECKPOINT_CLASSES = ("RateBaseline", "EIBaseline", "FragilityBaseline", "SVMEstimator",
                      "StackedEstimator", "TorchEstimator")


def estimator_state(estimator: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A fitted estimator as JSON-able metadata and named arrays (a checkpoint's content).

    Parameters are the validated config (``get_params()``); what was learned comes from the
    estimator's ``_export_learned()`` (a network's state dict, the SVM's support vectors
    and coefficients, the stack's combiner and its fitted bases).
    """
    name = type(estimator).__name__
    if name not in CHECKPOINT_CLASSES:
        raise TypeError(f"no checkpoint format for {name}")
    meta: dict[str, Any] = {"class": name, "model": estimator.name,
                            "params": estimator.get_params()}
    learned, arrays = estimator._export_learned()
    meta.update(learned)
    return meta, arrays


def _legacy_model(cls_name: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Zoo model and parameters of a checkpoint written before the registry (no ``model``
    key: torch estimators stored ``name`` and ``config``, rate baselines their ``rate``,
    the others their constructor arguments, which are their config's fields)."""
    if cls_name == "TorchEstimator":
        return params["name"], dict(params["config"])
    if cls_name == "RateBaseline":
        return params["rate"], {}
    fixed = {"EIBaseline": "ei", "FragilityBaseline": "fragility", "SVMEstimator": "svm",
             "StackedEstimator": "stack"}
    return fixed[cls_name], params


def estimator_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`estimator_state`."""
    from sozstore.models.registry import REGISTRY, parse_model_config

    cls_name = meta.get("class", "")
    if cls_name not in CHECKPOINT_CLASSES:
        raise ValueError(f"unknown estimator class {cls_name!r} in checkpoint")
    if "model" in meta:
        model, params = meta["model"], dict(meta["params"])
    else:
        model, params = _legacy_model(cls_name, dict(meta["params"]))
    if model not in REGISTRY:
        raise ValueError(f"unknown model {model!r} in checkpoint")
    spec = REGISTRY[model]
    estimator: Any = spec.build(parse_model_config(model, params, source="checkpoint"))
    if type(estimator).__name__ != cls_name:
        raise ValueError(f"checkpoint names class {cls_name} for model {model}, which is a "
                         f"{type(estimator).__name__}")
    estimator._import_learned(meta, arrays)
    return estimator


def save_checkpoint(estimator: Any, path: str | Path) -> None:
    """Write a fitted estimator as ``<path>.safetensors`` (its arrays) and ``<path>.json``
    (its class, model, parameters and learned values that are not arrays), each
    atomically."""
    from safetensors.numpy import save as save_arrays

    path = Path(path)
    meta, arrays = estimator_state(estimator)
    meta["format"] = CHECKPOINT_FORMAT
    blob = save_arrays({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    write_bytes_atomic(blob, path.with_suffix(".safetensors"))
    write_bytes_atomic(json.dumps(meta, indent=1).encode(), path.with_suffix(".json"))


def load_checkpoint(path: str | Path) -> Any:
    """Inverse of :func:`save_checkpoint` (``path`` with or without its suffix).

    Checkpoints of earlier versions (``.pt``/``.pkl``) are refused: unpickling them could
    execute code; re-run the training to write the safe format.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    if path.suffix in (".pt", ".pkl"):
        raise ValueError(f"{path}: a pickled checkpoint of an earlier sozstore; loading it "
                         "could execute code, so it is refused (re-run `sozstore train`)")
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}")
    arrays = load_file(str(path.with_suffix(".safetensors")))
    return estimator_from_state(meta, arrays)
