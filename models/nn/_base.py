"""Shared plumbing for the model zoo: config round-trip and mask checks.

Every model stores each ``__init__`` argument as an attribute of the same name (the
scikit-learn ``get_params`` convention), so :meth:`ConfigMixin.get_config` can rebuild the
argument dict from the signature alone and ``type(model).from_config(model.get_config())``
yields an identically shaped model (the braindecode ``get_config``/``from_config`` pattern).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

__all__ = ["ConfigMixin", "check_mask", "key_padding_mask"]


class ConfigMixin:
    """``get_config()`` / ``from_config()`` derived from the ``__init__`` signature."""

    @classmethod
    def _init_parameter_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            name
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_config(self) -> dict[str, Any]:
        """The ``__init__`` arguments of this model (JSON-serialisable scalars).

        Returns
        -------
        config : dict
            ``{name: value}`` for every ``__init__`` argument; pass it to
            :meth:`from_config` (or ``build_model``) to rebuild the architecture.
        """
        return {name: getattr(self, name) for name in self._init_parameter_names()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """Build a model from :meth:`get_config` output.

        Parameters
        ----------
        config : dict
            ``__init__`` arguments. Unknown keys raise rather than being dropped so that a
            stale or mistyped config cannot silently build a different model.

        Returns
        -------
        model : nn.Module
            A freshly initialised model (weights are not part of the config).
        """
        known = set(cls._init_parameter_names())
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_config got unknown keys {unknown}; known: {sorted(known)}"
            )
        return cls(**config)


def check_mask(mask: Tensor, batch: int, n_chans: int) -> Tensor:
    """Validate a channel mask and return it as bool.

    Parameters
    ----------
    mask : Tensor
        ``(batch, n_chans)``, True (or nonzero) = real channel, False = padding.
    batch, n_chans : int
        Expected shape.

    Returns
    -------
    mask : Tensor
        ``(batch, n_chans)`` bool.
    """
    if mask.shape != (batch, n_chans):
        raise ValueError(
            f"mask must have shape (batch, n_chans) = {(batch, n_chans)}, got {tuple(mask.shape)}"
        )
    return mask if mask.dtype == torch.bool else mask != 0


def key_padding_mask(mask: Tensor) -> Tensor:
    """Attention key padding mask (True = ignore) from a channel mask (True = real).

    A sample with no real channel would make every attention row fully masked and turn the
    softmax into NaN; such samples are left unmasked instead (their outputs are ignored
    downstream anyway), so one empty sample cannot poison a batch.

    Parameters
    ----------
    mask : Tensor
        ``(batch, n_chans)`` bool, True = real channel.

    Returns
    -------
    kpm : Tensor
        ``(batch, n_chans)`` bool, True = padded key.
    """
    return ~mask & mask.any(dim=1, keepdim=True)
