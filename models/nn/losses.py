"""Per-channel binary losses for SOZ labels (the zoo's loss, "Loss" in docs/models.md).

* :func:`class_balanced_weights`: Cui et al. (CVPR 2019) effective-number class weights.
* :func:`focal_bce`: class-weighted focal binary cross-entropy (Lin et al. 2017) on logits,
  averaged over real channels with a known label.
* :func:`weighted_bce`: the ``gamma = 0`` special case.

Padded channels (``mask`` False) and unknown labels (non-finite targets, e.g. NaN for a
contact whose SOZ status is not annotated) never contribute to the loss or its gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["class_balanced_weights", "focal_bce", "weighted_bce"]


def class_balanced_weights(n_neg: int, n_pos: int, *, beta: float = 0.999) -> tuple[float, float]:
    """Class-balanced weights from the effective number of samples (Cui et al. 2019).

    ``E_n = (1 - beta**n) / (1 - beta)`` and ``w_y = 1 / E_{n_y}``, normalised so that
    ``w_neg + w_pos = 2`` (the number of classes), as in the reference implementation
    (``vandit15/Class-balanced-loss-pytorch``).

    Parameters
    ----------
    n_neg, n_pos : int
        Number of negative (non-SOZ) and positive (SOZ) training examples, both >= 1.
    beta : float
        In ``[0, 1)``. ``0`` gives equal weights; ``beta -> 1`` tends to inverse frequency.

    Returns
    -------
    w_neg, w_pos : tuple of float
        Weights for the negative and positive class, summing to 2.

    Notes
    -----
    **Saturation caveat.** ``E_n <= 1 / (1 - beta)`` (1000 for ``beta = 0.999``), so once
    both counts are well above ~1000 both effective numbers saturate and the weights tend
    to ``(1, 1)``: no rebalancing at all (``n_pos = 8000, n_neg = 80000`` gives a ratio of
    about 1.0003). Callers must therefore pass counts of **unique (patient, channel)
    pairs**, not channel x window (sequence / clip) instances, or raise ``beta``
    (0.9999-0.99999), and should log the realised weights.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if n_neg < 1 or n_pos < 1:
        raise ValueError(
            f"both classes need at least one example, got n_neg={n_neg}, n_pos={n_pos}"
        )

    def inverse_effective_number(n: int) -> float:
        # (1 - beta) / (1 - beta**n); expm1/log1p keep precision for beta close to 1.
        if beta == 0.0:
            return 1.0
        return -math.expm1(math.log(beta)) / -math.expm1(n * math.log(beta))

    w = (inverse_effective_number(n_neg), inverse_effective_number(n_pos))
    total = w[0] + w[1]
    return (2.0 * w[0] / total, 2.0 * w[1] / total)


def focal_bce(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor,
    *,
    gamma: float = 0.0,
    weights: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """Class-weighted focal binary cross-entropy on logits, mean over valid entries.

    ``L = w_y * (1 - p_t)**gamma * (-log p_t)`` with ``p = sigmoid(z)``, ``p_t = p`` for
    ``y = 1`` and ``1 - p`` for ``y = 0``. The sum runs over entries that are real
    (``mask``) and have a finite target, and is divided by their count (not by the sum of
    weights), so ``gamma = 0`` equals ``BCEWithLogitsLoss(weight=w_y)`` restricted to the
    valid entries.

    Parameters
    ----------
    logits : Tensor
        Any shape, e.g. ``(batch, n_chans)``. Values at invalid entries are ignored (they
        may be NaN).
    targets : Tensor
        Same shape; 0/1 (soft targets in ``[0, 1]`` also work, with weights interpolated
        linearly). NaN/inf = unknown label, excluded.
    mask : Tensor
        Broadcastable to ``logits``; True = real channel.
    gamma : float
        Focusing parameter, >= 0. ``0`` gives weighted BCE.
    weights : tuple of float
        ``(w_neg, w_pos)``, e.g. from :func:`class_balanced_weights`.

    Returns
    -------
    loss : Tensor
        Scalar. Zero (still attached to the graph) when no entry is valid.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    targets = targets.to(logits.dtype)
    mask = torch.broadcast_to(mask.bool() if mask.dtype != torch.bool else mask, logits.shape)
    valid = mask & torch.isfinite(targets)
    # Replace invalid entries before the loss so NaN logits/targets at padding cannot leak
    # NaN into the sum or the gradient (0 * NaN is NaN).
    z = torch.where(valid, logits, torch.zeros_like(logits))
    y = torch.where(valid, targets, torch.zeros_like(targets))
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")  # = -log p_t
    w_neg, w_pos = weights
    w = w_neg + (w_pos - w_neg) * y
    loss = w * bce
    if gamma != 0.0:
        p_t = torch.exp(-bce)
        loss = loss * (1.0 - p_t).clamp_min(0.0).pow(gamma)
    loss = loss * valid
    n_valid = valid.sum()
    return loss.sum() / n_valid.clamp_min(1).to(loss.dtype)


def weighted_bce(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor,
    *,
    weights: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """Class-weighted BCE on logits over valid entries (:func:`focal_bce` with ``gamma=0``).

    Parameters
    ----------
    logits, targets, mask, weights
        As in :func:`focal_bce`.

    Returns
    -------
    loss : Tensor
        Scalar mean over real channels with finite targets.
    """
    return focal_bce(logits, targets, mask, gamma=0.0, weights=weights)
