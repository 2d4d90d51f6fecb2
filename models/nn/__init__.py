"""Neural SOZ model zoo: pure ``nn.Module``s and losses (no file I/O, no data loading).

All models take tensors only, with a bool channel mask ``(batch, n_chans)`` (True = real
channel); padded channels never influence real ones and their outputs are 0.

* :class:`SOZFormer`: per-clip features ``(batch, n_chans, n_clips, n_features)`` ->
  logits ``(batch, n_chans)``.
* :class:`DCGRUClassifier` / :class:`DCGRUForecaster`: per-step node features
  ``(batch, steps, n_chans, n_features)`` and Pearson matrices
  ``(batch, steps, n_chans, n_chans)``.
* :class:`SZLoc`: one-second windows ``(batch, n_chans, n_steps, n_samples)`` -> dict of
  outputs; trained with :func:`szloc_loss`.
"""

from .dcgru import (
    DCGRUCell,
    DCGRUClassifier,
    DCGRUEncoder,
    DCGRUForecaster,
    build_supports,
    correlation_graph,
    dual_random_walk_supports,
)
from .losses import class_balanced_weights, focal_bce, weighted_bce
from .registry import MODELS, build_model
from .sozformer import SOZFormer
from .szloc import SZLoc, szloc_loss

__all__ = [
    "MODELS",
    "DCGRUCell",
    "DCGRUClassifier",
    "DCGRUEncoder",
    "DCGRUForecaster",
    "SOZFormer",
    "SZLoc",
    "build_model",
    "build_supports",
    "class_balanced_weights",
    "correlation_graph",
    "dual_random_walk_supports",
    "focal_bce",
    "szloc_loss",
    "weighted_bce",
]
