"""DCRNN / DCGRU for per-channel SOZ logits (Tang et al., ICLR 2022; ``dcgru`` in docs/models.md).

A GRU whose matrix products are diffusion graph convolutions over a per-clip directed
correlation graph (dual random walk supports, ``K`` hops). Two heads share the same
:class:`DCGRUEncoder`:

* :class:`DCGRUClassifier`: one logit per node (channel) from the last (or step-averaged)
  hidden state, i.e. Tang's classification model without the node max-pool;
* :class:`DCGRUForecaster`: self-supervised next-step prediction, whose encoder weights
  load into the classifier's (``classifier.encoder.load_state_dict(...)``).

Graph construction (:func:`correlation_graph`, :func:`dual_random_walk_supports`) is done
inside the models from a Pearson matrix per step, so data loaders only ship ``r``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import ConfigMixin, check_mask

__all__ = [
    "DCGRUCell",
    "DCGRUClassifier",
    "DCGRUEncoder",
    "DCGRUForecaster",
    "DiffusionGraphConv",
    "build_supports",
    "correlation_graph",
    "dual_random_walk_supports",
]


# --------------------------------------------------------------------------- graphs


def _random_walk(adj: Tensor) -> Tensor:
    """``D^-1 A`` with ``D`` the row sums; rows with zero degree stay zero."""
    deg = adj.sum(dim=-1, keepdim=True)
    safe_deg = deg.clamp_min(torch.finfo(adj.dtype).tiny)
    inv = torch.where(deg > 0, 1.0 / safe_deg, torch.zeros_like(deg))
    return adj * inv


def dual_random_walk_supports(adj: Tensor) -> Tensor:
    """Forward and backward random-walk supports of a directed graph.

    Parameters
    ----------
    adj : Tensor
        ``(batch, n, n)`` (any leading dims) nonnegative weights, ``adj[i, j]`` = edge
        ``i -> j``.

    Returns
    -------
    supports : Tensor
        ``(batch, 2, n, n)``: ``[(D_O^-1 A)^T, (D_I^-1 A^T)^T]`` with ``D_O`` / ``D_I`` the
        out- / in-degree. Before the transpose each matrix is row-stochastic on rows with
        positive degree; zero-degree rows (isolated or padded nodes) stay zero instead of
        dividing by zero.
    """
    if (adj < 0).any():
        raise ValueError("adjacency must be nonnegative")
    return _dual_random_walk(adj)


def _dual_random_walk(adj: Tensor) -> Tensor:
    """:func:`dual_random_walk_supports` without the sign check (no device sync)."""
    forward = _random_walk(adj).transpose(-1, -2)
    backward = _random_walk(adj.transpose(-1, -2)).transpose(-1, -2)
    return torch.stack([forward, backward], dim=-3)


def correlation_graph(r: Tensor, *, top_k: int = 3) -> Tensor:
    """Directed top-k graph from a correlation matrix (Tang et al. ``keep_topk``).

    Parameters
    ----------
    r : Tensor
        ``(..., n, n)`` Pearson correlations; NaN (e.g. flat or padded channels) counts
        as 0.
    top_k : int
        Strongest neighbours kept per row (off-diagonal), by ``|r|``.

    Returns
    -------
    adj : Tensor
        ``(..., n, n)`` with ``|r|`` on the kept entries, 1 on the diagonal (self loops)
        and 0 elsewhere. Rows keep their own top-k, so the graph is directed (asymmetric).
    """
    a = torch.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0).abs()
    n = a.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    a = a.masked_fill(eye, 0.0)
    k = min(top_k, n - 1)
    if k > 0:
        keep = torch.zeros_like(a, dtype=torch.bool).scatter_(-1, a.topk(k, dim=-1).indices, True)
        a = a * keep
    else:
        a = torch.zeros_like(a)
    return a.masked_fill(eye, 1.0)


def build_supports(adj: Tensor, mask: Tensor, *, top_k: int = 3) -> Tensor:
    """Pearson matrices -> masked top-k graph -> dual random walk supports.

    Parameters
    ----------
    adj : Tensor
        ``(batch, steps, n_chans, n_chans)`` Pearson r per step (NaN allowed).
    mask : Tensor
        ``(batch, n_chans)`` bool, True = real channel.
    top_k : int
        Neighbours per node.

    Returns
    -------
    supports : Tensor
        ``(batch, steps, 2, n_chans, n_chans)``.
    """
    pair = (mask[:, :, None] & mask[:, None, :])[:, None]  # (batch, 1, n, n)
    # Zero padded entries *before* top-k so real nodes pick real neighbours, and again
    # after (self loops of padded nodes) so padded nodes are fully isolated.
    r = torch.nan_to_num(adj, nan=0.0, posinf=0.0, neginf=0.0).masked_fill(~pair, 0.0)
    graph = correlation_graph(r, top_k=top_k).masked_fill(~pair, 0.0)
    return _dual_random_walk(graph)  # nonnegative by construction


# ----------------------------------------------------------------------------- cell


class DiffusionGraphConv(nn.Module):
    """Diffusion convolution ``sum_k theta_k,s T_k(S_s) X`` over ``n_supports`` supports.

    Parameters
    ----------
    in_dim, out_dim : int
        Node feature sizes.
    n_supports : int
        Number of support matrices (2 for dual random walk).
    k_hops : int
        Diffusion steps ``K`` (0 = no graph mixing).
    bias_start : float
        Constant bias initialisation (1.0 for GRU gates, as in Tang et al.).

    Notes
    -----
    Terms follow Tang's / Li's code: ``x_1 = S x_0``, ``x_k = 2 S x_{k-1} - x_{k-2}``
    (Chebyshev-style recursion) for each support, concatenated with ``x_0`` and mixed by
    one linear map (``n_supports * K + 1`` matrices). **Quirk fixed:** the reference code
    does not reset ``x_0`` between supports, so for ``K >= 2`` the second support's
    recursion starts from the first support's last terms. Here every support's recursion
    starts from the input ``x_0`` (computed for all supports at once), which is what the
    diffusion-convolution formula describes. Weights are therefore not interchangeable
    with Tang's checkpoints for ``K >= 2``.
    """

    def __init__(self, in_dim: int, out_dim: int, *, n_supports: int = 2, k_hops: int = 2,
                 bias_start: float = 0.0) -> None:
        super().__init__()
        if k_hops < 0:
            raise ValueError(f"k_hops must be >= 0, got {k_hops}")
        self.n_supports = n_supports
        self.k_hops = k_hops
        self.linear = nn.Linear(in_dim * (n_supports * k_hops + 1), out_dim)
        nn.init.xavier_normal_(self.linear.weight, gain=1.414)
        nn.init.constant_(self.linear.bias, bias_start)

    def forward(self, x: Tensor, supports: Tensor) -> Tensor:
        """
        Parameters
        ----------
        x : Tensor
            ``(batch, n_nodes, in_dim)``.
        supports : Tensor
            ``(batch, n_supports, n_nodes, n_nodes)``.

        Returns
        -------
        y : Tensor
            ``(batch, n_nodes, out_dim)``.
        """
        batch, n_nodes, _in_dim = x.shape
        if self.k_hops == 0:
            return self.linear(x)
        x0 = x.unsqueeze(1)  # (batch, 1, n, in): the same start for every support
        x1 = supports @ x0  # (batch, S, n, in)
        terms = [x1]
        prev2, prev1 = x0, x1
        for _ in range(2, self.k_hops + 1):
            xk = 2.0 * (supports @ prev1) - prev2
            terms.append(xk)
            prev2, prev1 = prev1, xk
        diffused = torch.stack(terms, dim=2)  # (batch, S, K, n, in)
        diffused = diffused.permute(0, 3, 1, 2, 4).reshape(batch, n_nodes, -1)  # (batch, n, S*K*in)
        return self.linear(torch.cat([x, diffused], dim=-1))


class DCGRUCell(nn.Module):
    """GRU cell with diffusion graph convolutions (the DCRNN cell of Li et al., ICLR 2018).

    ``r, u = sigmoid(G_ru([x, h]))``, ``c = tanh(G_c([x, r * h]))``,
    ``h' = u * h + (1 - u) * c``.

    Parameters
    ----------
    in_dim : int
        Node input features.
    hidden : int
        Node hidden state size.
    k_hops : int
        Diffusion steps per support.
    n_supports : int
        Number of supports (2 for dual random walk).

    Notes
    -----
    ``x_0`` is reset per support in the diffusion convolution (see
    :class:`DiffusionGraphConv`), fixing the reference implementation's quirk.
    """

    def __init__(self, in_dim: int, hidden: int, *, k_hops: int = 2, n_supports: int = 2) -> None:
        super().__init__()
        self.hidden = hidden
        # Gate bias starts at 1 (Tang: bias_start=1.0) so the cell initially keeps memory.
        self.gate = DiffusionGraphConv(in_dim + hidden, 2 * hidden, n_supports=n_supports,
                                       k_hops=k_hops, bias_start=1.0)
        self.candidate = DiffusionGraphConv(in_dim + hidden, hidden, n_supports=n_supports,
                                            k_hops=k_hops, bias_start=0.0)

    def forward(self, x: Tensor, h: Tensor, supports: Tensor) -> Tensor:
        """
        Parameters
        ----------
        x : Tensor
            ``(batch, n_nodes, in_dim)``.
        h : Tensor
            ``(batch, n_nodes, hidden)`` previous state.
        supports : Tensor
            ``(batch, n_supports, n_nodes, n_nodes)``.

        Returns
        -------
        h_new : Tensor
            ``(batch, n_nodes, hidden)``.
        """
        r, u = torch.sigmoid(self.gate(torch.cat([x, h], dim=-1), supports)).chunk(2, dim=-1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], dim=-1), supports))
        return u * h + (1.0 - u) * c


# -------------------------------------------------------------------------- encoder


class DCGRUEncoder(ConfigMixin, nn.Module):
    """Stacked DCGRU unrolled over steps.

    Parameters
    ----------
    n_features : int
        Node features per step (e.g. 100 log-FFT bins).
    hidden : int
        Hidden units per node.
    n_layers : int
        Stacked DCGRU layers.
    k_hops : int
        Diffusion steps.
    dropout : float
        Dropout between stacked layers (not on the returned top-layer states, so the
        heads decide their own output dropout).
    """

    def __init__(self, n_features: int, *, hidden: int = 64, n_layers: int = 2, k_hops: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden = hidden
        self.n_layers = n_layers
        self.k_hops = k_hops
        self.dropout = dropout
        self.cells = nn.ModuleList(
            DCGRUCell(n_features if i == 0 else hidden, hidden, k_hops=k_hops)
            for i in range(n_layers)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, supports: Tensor, mask: Tensor) -> Tensor:
        """
        Parameters
        ----------
        x : Tensor
            ``(batch, steps, n_chans, n_features)``; padded channels may hold anything.
        supports : Tensor
            ``(batch, steps, 2, n_chans, n_chans)`` (or ``(batch, 2, n_chans, n_chans)`` for
            one graph shared by all steps).
        mask : Tensor
            ``(batch, n_chans)`` bool, True = real channel.

        Returns
        -------
        h : Tensor
            ``(batch, steps, n_chans, hidden)`` top-layer states; 0 at padded channels.
        """
        batch, steps, n_chans, n_feat = x.shape
        if n_feat != self.n_features:
            raise ValueError(f"x has {n_feat} features, encoder expects {self.n_features}")
        mask = check_mask(mask, batch, n_chans)
        if supports.ndim == 4:
            supports = supports.unsqueeze(1).expand(-1, steps, -1, -1, -1)
        node = mask[:, None, :, None]  # (batch, 1, n, 1)
        x = torch.where(node, x, torch.zeros_like(x))
        # Padded rows/columns of every support are zeroed here as well, so padding stays
        # isolated even if the caller built supports without the mask.
        pair = (mask[:, :, None] & mask[:, None, :])[:, None, None]  # (batch, 1, 1, n, n)
        supports = supports.masked_fill(~pair, 0.0)

        h = [x.new_zeros(batch, n_chans, self.hidden) for _ in self.cells]
        outputs = []
        for t in range(steps):
            inp = x[:, t]
            for i, cell in enumerate(self.cells):
                if i > 0:
                    inp = self.drop(inp)
                h[i] = cell(inp, h[i], supports[:, t])
                inp = h[i]
            outputs.append(inp)
        return torch.stack(outputs, dim=1).masked_fill(~node, 0.0)


# ---------------------------------------------------------------------------- heads


class DCGRUClassifier(ConfigMixin, nn.Module):
    """Per-channel SOZ logits from a DCGRU over a per-step correlation graph.

    Parameters
    ----------
    n_features : int
        Node features per step.
    hidden, n_layers, k_hops, dropout
        See :class:`DCGRUEncoder`. The default ``n_layers=2`` follows Tang et al.; the
        small demo configuration (``REGISTRY["dcgru"].demo`` in
        :mod:`sozstore.models.registry`) uses 1.
    top_k : int
        Neighbours kept per node in the correlation graph.
    readout : {"last", "mean"}
        Node state used by the head: the last step (Tang et al.) or the mean over steps.

    Notes
    -----
    Head as in Tang's ``DCRNNModel_classification`` but without the max-pool over nodes:
    ``Linear(ReLU(Dropout(h)))`` per node.
    """

    def __init__(self, n_features: int, *, hidden: int = 64, n_layers: int = 2, k_hops: int = 2,
                 dropout: float = 0.1, top_k: int = 3, readout: str = "last") -> None:
        super().__init__()
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
        self.n_features = n_features
        self.hidden = hidden
        self.n_layers = n_layers
        self.k_hops = k_hops
        self.dropout = dropout
        self.top_k = top_k
        self.readout = readout
        self.encoder = DCGRUEncoder(n_features, hidden=hidden, n_layers=n_layers, k_hops=k_hops,
                                    dropout=dropout)
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        """
        Parameters
        ----------
        x : Tensor
            ``(batch, steps, n_chans, n_features)``.
        adj : Tensor
            ``(batch, steps, n_chans, n_chans)`` Pearson r per step; NaN counts as 0.
        mask : Tensor
            ``(batch, n_chans)`` bool, True = real channel.

        Returns
        -------
        logits : Tensor
            ``(batch, n_chans)``; 0 at padded channels.
        """
        mask = check_mask(mask, x.shape[0], x.shape[2])
        supports = build_supports(adj, mask, top_k=self.top_k)
        h = self.encoder(x, supports, mask)  # (batch, steps, n, hidden)
        h = h[:, -1] if self.readout == "last" else h.mean(dim=1)  # (batch, n, hidden)
        logits = self.head(F.relu(self.head_dropout(h))).squeeze(-1)  # (batch, n)
        return logits.masked_fill(~mask, 0.0)


class DCGRUForecaster(ConfigMixin, nn.Module):
    """Self-supervised next-step prediction for pre-training the DCGRU encoder.

    Teacher-forced one-step-ahead variant of Tang et al.'s next-time-period task: the
    encoder reads steps ``0..T-2`` and a linear projection of each state predicts the
    following step's features.

    Parameters
    ----------
    n_features, hidden, n_layers, k_hops, dropout, top_k
        As in :class:`DCGRUClassifier`; use the same values there to transfer the encoder.
    """

    def __init__(self, n_features: int, *, hidden: int = 64, n_layers: int = 2, k_hops: int = 2,
                 dropout: float = 0.1, top_k: int = 3) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden = hidden
        self.n_layers = n_layers
        self.k_hops = k_hops
        self.dropout = dropout
        self.top_k = top_k
        self.encoder = DCGRUEncoder(n_features, hidden=hidden, n_layers=n_layers, k_hops=k_hops,
                                    dropout=dropout)
        self.projection = nn.Linear(hidden, n_features)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        """
        Parameters
        ----------
        x : Tensor
            ``(batch, steps, n_chans, n_features)``, ``steps >= 2``.
        adj : Tensor
            ``(batch, steps, n_chans, n_chans)`` Pearson r per step.
        mask : Tensor
            ``(batch, n_chans)`` bool.

        Returns
        -------
        pred : Tensor
            ``(batch, steps - 1, n_chans, n_features)``, the prediction of ``x[:, 1:]``;
            0 at padded channels.
        """
        if x.shape[1] < 2:
            raise ValueError("next-step prediction needs at least 2 steps")
        mask = check_mask(mask, x.shape[0], x.shape[2])
        supports = build_supports(adj[:, :-1], mask, top_k=self.top_k)
        h = self.encoder(x[:, :-1], supports, mask)  # (batch, steps-1, n, hidden)
        return self.projection(h).masked_fill(~mask[:, None, :, None], 0.0)

    def loss(self, x: Tensor, adj: Tensor, mask: Tensor, *, kind: str = "mse") -> Tensor:
        """Masked regression loss of the next-step prediction.

        Parameters
        ----------
        x, adj, mask
            As in :meth:`forward`.
        kind : {"mse", "mae"}
            Squared or absolute error (Tang et al. use MAE).

        Returns
        -------
        loss : Tensor
            Scalar mean over real channels, predicted steps and features with finite
            targets.
        """
        if kind not in ("mse", "mae"):
            raise ValueError(f"kind must be 'mse' or 'mae', got {kind!r}")
        pred = self(x, adj, mask)
        target = x[:, 1:]
        valid = mask.bool()[:, None, :, None] & torch.isfinite(target)
        diff = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
        err = diff.square() if kind == "mse" else diff.abs()
        return err.sum() / valid.sum().clamp_min(1).to(err.dtype)
