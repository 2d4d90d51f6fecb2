"""Name -> model class registry of the neural SOZ zoo."""

from __future__ import annotations

from typing import Any

from torch import nn

from ._base import ConfigMixin
from .dcgru import DCGRUClassifier
from .sozformer import SOZFormer
from .szloc import SZLoc

__all__ = ["MODELS", "build_model"]

#: Registered per-channel SOZ models. Each is an ``nn.Module`` with ``get_config()`` (its
#: ``__init__`` arguments) and ``from_config(config)``; typed by the mixin so that
#: ``from_config`` is visible to the type checker.
MODELS: dict[str, type[ConfigMixin]] = {
    "sozformer": SOZFormer,
    "dcgru": DCGRUClassifier,
    "szloc": SZLoc,
}


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Build a freshly initialised model by registry name.

    Parameters
    ----------
    name : str
        Key of :data:`MODELS`.
    config : dict
        ``__init__`` arguments, e.g. from ``model.get_config()``.

    Returns
    -------
    model : nn.Module
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(MODELS)}") from None
    model = cls.from_config(config)
    assert isinstance(model, nn.Module)
    return model
