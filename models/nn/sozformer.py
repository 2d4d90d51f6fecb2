"""SOZFormer: two-stage (temporal -> spatial) transformer over per-clip channel features.

Each channel's sequence of clip feature vectors (e.g. 25 five-second clips of log-PSD
features) is summarised by a temporal transformer with a CLS token; the channel embeddings
then attend to each other in a spatial transformer that has no channel-index encoding, so
the model is permutation-equivariant over channels and works for any channel count; a
small head gives one SOZ logit per channel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._base import ConfigMixin, check_mask, key_padding_mask

__all__ = ["SOZFormer"]


def _pre_ln_encoder(d_model: int, n_heads: int, n_layers: int, dim_feedforward: int,
                    dropout: float) -> nn.TransformerEncoder:
    """Pre-LN transformer encoder with a final LayerNorm (needed because pre-LN layers
    leave the residual stream un-normalised)."""
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, dim_feedforward=dim_feedforward, dropout=dropout,
        activation="gelu", batch_first=True, norm_first=True,
    )
    # Nested tensors are disabled: they only apply to post-LN stacks and would otherwise
    # make eval-mode outputs depend on the padding layout through a different kernel.
    return nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model),
                                 enable_nested_tensor=False)


class SOZFormer(ConfigMixin, nn.Module):
    """Two-stage transformer giving one SOZ logit per channel.

    Parameters
    ----------
    n_features : int
        Features per clip and channel (e.g. 102 = 100 log-PSD bins + line length +
        variance).
    d_model : int
        Token width of both transformers.
    n_heads : int
        Attention heads (``d_model`` must be divisible by it).
    n_temporal_layers, n_spatial_layers : int
        Depth of the per-channel temporal and the across-channel spatial encoder.
    dim_feedforward : int
        Hidden width of the transformer MLPs.
    dropout : float
        Dropout in the transformers and the head.
    max_clips : int
        Longest clip sequence supported (size of the learnable clip-position table).

    Notes
    -----
    * Clip positions are positions *within the input window* (0..n_clips-1 after the CLS
      token), not absolute recording time, so windows from anywhere in a recording share
      them.
    * No channel-index or channel-name embedding: channels are an unordered set, so
      permuting channels permutes the logits and any channel count (including 1) works.
    * Only real channels go through the temporal stage; padded channels re-enter as zero
      tokens that the spatial stage masks as keys, so they cannot influence real
      channels. Their logits are returned as 0 and must be ignored by the loss.
    * Inputs must be finite on real channels (impute missing clip features upstream);
      padded channels may hold anything, including NaN.
    """

    def __init__(
        self,
        n_features: int,
        *,
        d_model: int = 128,
        n_heads: int = 4,
        n_temporal_layers: int = 2,
        n_spatial_layers: int = 2,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        max_clips: int = 64,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_features = n_features
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_temporal_layers = n_temporal_layers
        self.n_spatial_layers = n_spatial_layers
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.max_clips = max_clips

        self.tokenizer = nn.Sequential(nn.Linear(n_features, d_model), nn.LayerNorm(d_model))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        # Row 0 is the CLS position, rows 1..max_clips the clip positions.
        self.clip_position = nn.Parameter(torch.zeros(1, max_clips + 1, d_model))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.clip_position, std=0.02)
        self.temporal = _pre_ln_encoder(
            d_model, n_heads, n_temporal_layers, dim_feedforward, dropout
        )
        self.spatial = _pre_ln_encoder(d_model, n_heads, n_spatial_layers, dim_feedforward, dropout)
        self.head = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, 64),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(64, 1),
        )

    def encode_channels(self, x: Tensor) -> Tensor:
        """Temporal stage for a flat set of channels.

        Parameters
        ----------
        x : Tensor
            ``(n_channels, n_clips, n_features)``.

        Returns
        -------
        emb : Tensor
            ``(n_channels, d_model)`` CLS outputs.
        """
        n, s, _ = x.shape
        tokens = self.tokenizer(x)  # (n, s, d)
        tokens = torch.cat([self.cls_token.expand(n, 1, -1), tokens], dim=1)
        tokens = tokens + self.clip_position[:, : s + 1]
        return self.temporal(tokens)[:, 0]  # (n, d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Per-channel SOZ logits.

        Parameters
        ----------
        x : Tensor
            ``(batch, n_chans, n_clips, n_features)`` per-clip features.
        mask : Tensor
            ``(batch, n_chans)`` bool, True = real channel.

        Returns
        -------
        logits : Tensor
            ``(batch, n_chans)``; 0 at padded channels.
        """
        if x.ndim != 4 or x.shape[-1] != self.n_features:
            raise ValueError(
                f"x must be (batch, n_chans, n_clips, {self.n_features}), got {tuple(x.shape)}"
            )
        batch, n_chans, n_clips, _ = x.shape
        if n_clips > self.max_clips:
            raise ValueError(f"n_clips={n_clips} exceeds max_clips={self.max_clips}")
        mask = check_mask(mask, batch, n_chans)

        if mask.any():
            # Only real channels are encoded: saves work and keeps NaN padding out.
            real = self.encode_channels(x[mask])  # (n_real, d)
            # zeros in the encoder's dtype (it differs from x's under autocast)
            emb = real.new_zeros(batch, n_chans, self.d_model).index_put((mask,), real)
        else:
            emb = x.new_zeros(batch, n_chans, self.d_model)
        z = self.spatial(emb, src_key_padding_mask=key_padding_mask(mask))  # (batch, n_chans, d)
        logits = self.head(z).squeeze(-1)  # (batch, n_chans)
        return logits.masked_fill(~mask, 0.0)


def masked_reconstruction_loss(model: SOZFormer, head: nn.Module, x: Tensor, mask: Tensor, *,
                               fraction: float = 0.3,
                               generator: torch.Generator | None = None) -> Tensor:
    """Masked-clip reconstruction loss of SOZFormer's temporal stage (self-supervised).

    A random ``fraction`` of every real channel's clips is replaced by zeros (the
    recording's median after the robust normalisation of the clip features) and ``head``
    reconstructs the original features of those clips from the temporal encoder's output
    tokens, as in masked autoencoding. Only the tokenizer, clip positions and temporal
    encoder receive gradients through the model.

    Parameters
    ----------
    model : SOZFormer
    head : nn.Module
        Maps ``(..., d_model)`` to ``(..., n_features)``.
    x : Tensor
        ``(batch, n_chans, n_clips, n_features)`` clip features.
    mask : Tensor
        ``(batch, n_chans)`` bool, True = real channel.
    fraction : float
        Fraction of clips masked per channel (at least one).
    generator : torch.Generator, optional
        Source of the masks (seeded by the caller).

    Returns
    -------
    loss : Tensor
        Scalar mean squared error over the masked clips of real channels.
    """
    real = x[mask]  # (n_real, n_clips, n_features)
    n, s, _ = real.shape
    if n == 0:
        return x.new_zeros(())
    hidden = torch.rand(n, s, generator=generator).to(real.device) < fraction
    hidden[torch.arange(n), torch.randint(0, s, (n,), generator=generator).to(real.device)] = True
    corrupted = real.masked_fill(hidden[..., None], 0.0)
    tokens = model.tokenizer(corrupted)
    tokens = torch.cat([model.cls_token.expand(n, 1, -1), tokens], dim=1)
    tokens = tokens + model.clip_position[:, : s + 1]
    out = model.temporal(tokens)[:, 1:]  # (n_real, n_clips, d_model)
    error = (head(out) - real) ** 2
    return error[hidden].mean()
