"""SZLoc (Craley et al., MIDL 2022) adapted to a variable number of SEEG contacts.

Follows the SZLoc re-implementation in the DeepSOZ code; the one architectural change,
which makes it work for any channel count, is the global token (in bold):

* local per-channel CNN on every one-second window (ConvBlocks, LeakyReLU, mean over
  time) -> one token per (second, channel);
* **global token = projected masked mean of the local tokens** instead of the 19-channel
  global CNN (whose first convolution fixes the channel count);
* per-second transformer fusion (``nn.Transformer`` layout: src = channel tokens + global
  token, tgt = channel tokens, key padding masks);
* per-channel BiGRU over seconds -> electrode-level seizure logits; global GRU ->
  whole-recording seizure logits and a temporal attention;
* onset maps ``M_attn`` and ``M_chn``, and the multi-task loss for inexact labels
  (:func:`szloc_loss`).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import ConfigMixin, check_mask, key_padding_mask

__all__ = ["ConvBlock", "LocalEncoder", "SZLoc", "onset_maps", "szloc_loss"]

#: Clamp of the blended map before the logit in ``soz_logits`` (keeps logits in +-9.2).
_SOZ_EPS = 1e-4
#: Denominator guard of the max normalisation (as in the reference loss).
_NORM_EPS = 1e-6


class ConvBlock(nn.Module):
    """Residual stack of same-length 1-D convolutions (DeepSOZ ``ConvBlock``).

    Parameters
    ----------
    channels : int
        Input = output feature maps.
    n_layers : int
        Convolutions in the block.
    kernel_size : int
        Odd kernel size; padding keeps the length.

    Notes
    -----
    Reproduces the reference's double skip, ``LeakyReLU(F(x) + x) + x``, with LeakyReLU
    between the convolutions and no normalisation (BatchNorm is off by default there, and
    would couple padded and real channels in training mode).
    """

    def __init__(self, channels: int, n_layers: int = 1, kernel_size: int = 7) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
            for _ in range(n_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(n, channels, length) -> (n, channels, length)``."""
        h = self.convs[0](x)
        for conv in self.convs[1:]:
            h = conv(F.leaky_relu(h))
        return F.leaky_relu(h + x) + x


class LocalEncoder(nn.Module):
    """Single-channel CNN encoder of one-second windows (SZLoc's local encoder).

    ``Conv1d(1->d/8, k7)``, then three times ``ConvBlock -> Conv1d(k1, stride 2)`` doubling
    the width, a last ``ConvBlock(d)``, mean over time and dropout. With ``d = 80`` the widths
    are 10-20-40-80 as in the reference.

    Parameters
    ----------
    d_model : int
        Output width, divisible by 8.
    dropout : float
        Dropout on the output token.
    """

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        widths = [d_model // 8, d_model // 4, d_model // 2, d_model]
        layers: list[nn.Module] = [nn.Conv1d(1, widths[0], 7, padding=3)]
        for w_in, w_out in itertools.pairwise(widths):
            layers += [ConvBlock(w_in), nn.Conv1d(w_in, w_out, 1, stride=2)]
        layers.append(ConvBlock(widths[-1]))
        self.net = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(n_windows, n_samples) -> (n_windows, d_model)``."""
        return self.drop(self.net(x.unsqueeze(1)).mean(dim=-1))


def _max_normalise(m: Tensor, mask: Tensor) -> Tensor:
    """``M / (max_c M + eps)`` over real channels; padded entries become 0."""
    m = m.masked_fill(~mask, 0.0)
    return m / (m.amax(dim=-1, keepdim=True) + _NORM_EPS)


def onset_maps(channel_logits: Tensor, attention: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Attention and channel onset maps (SZLoc's outputs derived from its heads).

    Parameters
    ----------
    channel_logits : Tensor
        ``(batch, n_steps, n_chans, 2)`` electrode-level seizure logits.
    attention : Tensor
        ``(batch, n_steps)`` temporal attention (sums to 1 over steps).
    mask : Tensor
        ``(batch, n_chans)`` bool.

    Returns
    -------
    m_attn : Tensor
        ``(batch, n_chans)``, ``sum_t a_t p_c(t)``.
    m_chn : Tensor
        ``(batch, n_chans)``, ``sum_{t>=1} ReLU(max_c' p_c'(t) - max_c' p_c'(t-1)) p_c(t)``:
        weights the seconds where the most seizure-like channel's probability rises.
    """
    p = channel_logits.softmax(dim=-1)[..., 1].masked_fill(~mask[:, None, :], 0.0)  # (batch, T, C)
    m_attn = (attention.unsqueeze(-1) * p).sum(dim=1)
    p_max = p.amax(dim=-1)  # (batch, T)
    rise = F.relu(p_max[:, 1:] - p_max[:, :-1])  # (batch, T-1)
    m_chn = (rise.unsqueeze(-1) * p[:, 1:]).sum(dim=1)
    return m_attn, m_chn


class SZLoc(ConfigMixin, nn.Module):
    """Multi-resolution seizure localiser for variable channel sets.

    Parameters
    ----------
    n_samples : int
        Samples per one-second window (200 at 200 Hz as in the reference; 256 at 256 Hz).
        The CNN is length-agnostic; this is checked to catch a sampling-rate mix-up.
    d_model : int
        Token width (divisible by 8 and by ``n_heads``).
    n_heads : int
        Attention heads of the fusion transformer.
    dropout : float
        Dropout of the CNN output and the transformer.
    dim_feedforward : int
        Transformer MLP width (128 in the reference).

    Notes
    -----
    ``soz_logits`` is the differentiable per-channel SOZ score used for ranking/metrics:
    ``logit(clip((M̂_chn + M̂_attn) / 2, 1e-4, 1 - 1e-4))`` with each map max-normalised
    over the real channels of the sample. ``M_chn`` is the reference's inference map
    (onset emphasis); averaging with ``M_attn`` (a convex combination of probabilities,
    never all-zero) keeps the score informative when no rise is detected. It is relative
    within a sample (the top channel is always near ``logit(1 - 1e-4)``), not a calibrated
    probability; train with :func:`szloc_loss`, not BCE on it.
    """

    def __init__(self, n_samples: int, *, d_model: int = 80, n_heads: int = 8,
                 dropout: float = 0.15, dim_feedforward: int = 128) -> None:
        super().__init__()
        if d_model % 8 or d_model % n_heads:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by 8 and by n_heads ({n_heads})"
            )
        self.n_samples = n_samples
        self.d_model = d_model
        self.n_heads = n_heads
        self.dropout = dropout
        self.dim_feedforward = dim_feedforward

        self.local_encoder = LocalEncoder(d_model, dropout)
        # Channel-agnostic replacement of the global CNN: a learned map of the masked mean.
        self.global_proj = nn.Sequential(nn.Linear(d_model, d_model), nn.LeakyReLU())
        # nn.Transformer(num_encoder_layers=1, num_decoder_layers=1), built from its parts
        # so nested-tensor fast paths stay off (same numerics with or without padding).
        self.fusion_encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward, dropout, batch_first=True
            ),
            1, norm=nn.LayerNorm(d_model), enable_nested_tensor=False,
        )
        self.fusion_decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(
                d_model, n_heads, dim_feedforward, dropout, batch_first=True
            ),
            1, norm=nn.LayerNorm(d_model),
        )
        self.channel_gru = nn.GRU(
            d_model, d_model // 2, num_layers=2, bidirectional=True, batch_first=True
        )
        self.channel_head = nn.Linear(d_model, 2)
        self.global_gru = nn.GRU(
            d_model, d_model // 2, num_layers=1, bidirectional=True, batch_first=True
        )
        self.global_head = nn.Linear(d_model, 2)
        self.attention_head = nn.Linear(d_model, 1)

    def forward(self, x: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """
        Parameters
        ----------
        x : Tensor
            ``(batch, n_chans, n_steps, n_samples)`` one-second windows.
        mask : Tensor
            ``(batch, n_chans)`` bool, True = real channel.

        Returns
        -------
        out : dict of Tensor
            ``soz_logits`` ``(batch, n_chans)`` (see Notes of the class),
            ``channel_logits`` ``(batch, n_steps, n_chans, 2)``,
            ``global_logits`` ``(batch, n_steps, 2)``,
            ``attention`` ``(batch, n_steps)`` (softmax over steps),
            ``onset_map_attn`` ``(batch, n_chans)``, ``onset_map_chn`` ``(batch, n_chans)``.
            Padded channels are 0 in every per-channel output.
        """
        if x.ndim != 4 or x.shape[-1] != self.n_samples:
            raise ValueError(
                f"x must be (batch, n_chans, n_steps, {self.n_samples}), got {tuple(x.shape)}"
            )
        batch, n_chans, n_steps, n_samples = x.shape
        mask = check_mask(mask, batch, n_chans)
        d = self.d_model

        # Local encodings of real channels only: (n_real, T, L) -> (n_real, T, d).
        real = x[mask]
        local = self.local_encoder(real.reshape(-1, n_samples)).reshape(real.shape[0], n_steps, d)
        # zeros in the encoder's dtype (it differs from x's under autocast)
        h = local.new_zeros(batch, n_chans, n_steps, d).index_put((mask,), local)  # (B, C, T, d)
        h = h.transpose(1, 2)  # (B, T, C, d)

        # Global token per second: masked mean over real channels.
        n_real = mask.sum(dim=1).clamp_min(1).to(h.dtype)  # (B,)
        g = self.global_proj(h.sum(dim=2) / n_real[:, None, None])  # (B, T, d)

        # Fusion per second: flatten (B, T) into the transformer batch.
        chan = h.reshape(batch * n_steps, n_chans, d)
        kpm = key_padding_mask(mask).repeat_interleave(n_steps, dim=0)  # (B*T, C)
        src = torch.cat([chan, g.reshape(batch * n_steps, 1, d)], dim=1)  # (B*T, C+1, d)
        src_kpm = torch.cat([kpm, kpm.new_zeros(batch * n_steps, 1)], dim=1)  # global never masked
        memory = self.fusion_encoder(src, src_key_padding_mask=src_kpm)
        fused = self.fusion_decoder(chan, memory, tgt_key_padding_mask=kpm,
                                    memory_key_padding_mask=src_kpm)  # (B*T, C, d)
        fused = fused.reshape(batch, n_steps, n_chans, d).transpose(1, 2)  # (B, C, T, d)

        # Per-channel BiGRU over seconds, real channels only.
        seq, _ = self.channel_gru(fused[mask])  # (n_real, T, d)
        real_logits = self.channel_head(seq)  # (n_real, T, 2)
        ch_logits = real_logits.new_zeros(batch, n_chans, n_steps, 2)
        ch_logits = ch_logits.index_put((mask,), real_logits)
        ch_logits = ch_logits.transpose(1, 2)  # (B, T, C, 2)

        g_seq, _ = self.global_gru(g)  # (B, T, d)
        global_logits = self.global_head(g_seq)  # (B, T, 2)
        attention = self.attention_head(g_seq).squeeze(-1).softmax(dim=1)  # (B, T)

        # Maps in float32: under bf16 autocast 1 - 1e-4 rounds to 1 and the logit to inf.
        m_attn, m_chn = onset_maps(ch_logits.float(), attention.float(), mask)
        score = 0.5 * (_max_normalise(m_chn, mask) + _max_normalise(m_attn, mask))
        soz_logits = torch.logit(score, eps=_SOZ_EPS).masked_fill(~mask, 0.0)
        return {
            "soz_logits": soz_logits,
            "channel_logits": ch_logits,
            "global_logits": global_logits,
            "attention": attention,
            "onset_map_attn": m_attn,
            "onset_map_chn": m_chn,
        }


def _max_channel_logits(channel_logits: Tensor, mask: Tensor) -> Tensor:
    """Logits of the most seizure-like real channel at each step: ``(B, T, C, 2) -> (B, T, 2)``."""
    p = channel_logits.softmax(dim=-1)[..., 1].masked_fill(~mask[:, None, :], -1.0)
    idx = p.argmax(dim=-1)  # (B, T); the selection itself carries no gradient, as in S1
    b, t = idx.shape
    return channel_logits.gather(2, idx[:, :, None, None].expand(b, t, 1, 2)).squeeze(2)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` samples (0, attached, when none)."""
    return (values * valid).sum() / valid.sum().clamp_min(1).to(values.dtype)


def _map_losses(
    m: Tensor, soz: Tensor, known: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``L_pos``, ``L_neg``, ``L_margin`` of one onset map.

    They pull the max-normalised map towards 1 on known SOZ channels and towards 0 on known
    non-SOZ channels, and push the SOZ maximum above the non-SOZ maximum.
    """
    m_hat = _max_normalise(m, mask)
    pos = soz * known  # 1 on known SOZ channels
    neg = (1.0 - soz) * known  # 1 on known non-SOZ channels
    n_pos, n_neg = pos.sum(dim=-1), neg.sum(dim=-1)
    l_pos = ((pos - m_hat * pos) ** 2).sum(dim=-1) / n_pos.clamp_min(1)
    l_neg = ((m_hat * neg) ** 2).sum(dim=-1) / n_neg.clamp_min(1)
    l_margin = (1.0 - (m_hat * pos).amax(dim=-1) ** 2 + (m_hat * neg).amax(dim=-1) ** 2) / 2
    # Samples without a positive (or negative) channel have no defined term; average the
    # others instead of dividing by zero as the reference would.
    has_pos, has_neg = n_pos > 0, n_neg > 0
    return (_masked_mean(l_pos, has_pos), _masked_mean(l_neg, has_neg),
            _masked_mean(l_margin, has_pos & has_neg))


def szloc_loss(
    out: dict[str, Tensor],
    seizure: Tensor,
    soz: Tensor,
    mask: Tensor,
    *,
    exclude: tuple[int, int] | None,
    ce_weight: float = 1.0,
    map_weights: tuple[float, float, float] = (2.0, 1.0, 1.0),
) -> Tensor:
    """Multi-task loss for inexact temporal and spatial labels (SZLoc, Craley et al. 2022).

    ``L = ce_weight * [CE(max-channel logits, y) + CE(global logits, y)]
    + sum over M in {M_attn, M_chn} of (w_pos L_pos + w_neg L_neg + w_margin L_margin)``.

    Parameters
    ----------
    out : dict of Tensor
        :meth:`SZLoc.forward` output (uses ``channel_logits``, ``global_logits``,
        ``onset_map_attn``, ``onset_map_chn``).
    seizure : Tensor
        ``(batch, n_steps)`` 0/1 per-second seizure label; NaN = unknown, excluded.
    soz : Tensor
        ``(batch, n_chans)`` 0/1 SOZ label; NaN = unknown, excluded from the map losses
        (neither positive nor negative).
    mask : Tensor
        ``(batch, n_chans)`` bool, True = real channel.
    exclude : tuple of int or None
        ``(start, stop)`` step slice left out of both CE terms, the window that contains
        the inexactly known onset (``(15, 30)`` for the reference 45-s crops with onset
        jittered into seconds 16-29). Same for every sample. ``None`` keeps all steps.
    ce_weight : float
        Weight of each CE term (1 in the reference).
    map_weights : tuple of float
        ``(w_pos, w_neg, w_margin)`` per map ((2, 1, 1) in the reference).

    Returns
    -------
    loss : Tensor
        Scalar.
    """
    ch_logits, global_logits = out["channel_logits"], out["global_logits"]
    batch, _n_steps, n_chans, _ = ch_logits.shape
    mask = check_mask(mask, batch, n_chans)

    valid_t = torch.isfinite(seizure)
    if exclude is not None:
        start, stop = exclude
        if not 0 <= start <= stop:
            raise ValueError(
                f"exclude must be (start, stop) with 0 <= start <= stop, got {exclude}"
            )
        valid_t[:, start:stop] = False
    y = torch.nan_to_num(seizure).long()
    if valid_t.any():
        ce = (F.cross_entropy(_max_channel_logits(ch_logits, mask)[valid_t], y[valid_t])
              + F.cross_entropy(global_logits[valid_t], y[valid_t]))
    else:
        ce = ch_logits.sum() * 0.0
    loss = ce_weight * ce

    known = (mask & torch.isfinite(soz)).to(ch_logits.dtype)
    s = torch.nan_to_num(soz).to(ch_logits.dtype)
    w_pos, w_neg, w_margin = map_weights
    for key in ("onset_map_attn", "onset_map_chn"):
        l_pos, l_neg, l_margin = _map_losses(out[key], s, known, mask)
        loss = loss + w_pos * l_pos + w_neg * l_neg + w_margin * l_margin
    return loss
