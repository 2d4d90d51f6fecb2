"""Neural model zoo: shapes, padding isolation, graph construction, losses, tiny training."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from sozstore.models.nn import (
    MODELS,
    DCGRUClassifier,
    DCGRUForecaster,
    SOZFormer,
    SZLoc,
    build_model,
    class_balanced_weights,
    correlation_graph,
    dual_random_walk_supports,
    focal_bce,
    szloc_loss,
    weighted_bce,
)

torch.set_num_threads(min(2, torch.get_num_threads()))

# Small sizes: the tests check behaviour, not capacity.
SOZFORMER_SMALL: dict[str, Any] = dict(d_model=32, n_heads=4, n_temporal_layers=1,
                                       n_spatial_layers=1, dim_feedforward=64, dropout=0.1,
                                       max_clips=16)
DCGRU_SMALL: dict[str, Any] = dict(hidden=16, n_layers=2, k_hops=2, dropout=0.1, top_k=3)
SZLOC_SMALL: dict[str, Any] = dict(d_model=32, n_heads=4, dropout=0.15, dim_feedforward=32)
N_FEAT, N_CLIPS, N_STEPS, N_SAMPLES, SZ_STEPS = 6, 5, 4, 64, 8


def _mask(counts: list[int], n_max: int) -> torch.Tensor:
    return torch.arange(n_max)[None, :] < torch.tensor(counts)[:, None]


def _pearson(signals: torch.Tensor) -> torch.Tensor:
    """(..., n, t) -> (..., n, n) Pearson r (NaN for flat channels)."""
    z = signals - signals.mean(-1, keepdim=True)
    z = z / z.norm(dim=-1, keepdim=True)
    return z @ z.transpose(-1, -2)


def _inputs(
    name: str, counts: list[int], n_max: int, *, seed: int = 0
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Random model inputs for a padded batch; padding holds NaN to prove it is never read."""
    g = torch.Generator().manual_seed(seed)
    mask = _mask(counts, n_max)
    b = len(counts)
    if name == "sozformer":
        x = torch.randn(b, n_max, N_CLIPS, N_FEAT, generator=g)
        x[~mask] = float("nan")
        return (x, mask), mask
    if name in ("dcgru", "forecaster"):
        x = torch.randn(b, N_STEPS, n_max, N_FEAT, generator=g)
        adj = _pearson(torch.randn(b, N_STEPS, n_max, 32, generator=g))
        x.transpose(1, 2)[~mask] = float("nan")
        pad = ~(mask[:, :, None] & mask[:, None, :])
        adj.masked_fill_(pad[:, None], float("nan"))
        return (x, adj, mask), mask
    x = torch.randn(b, n_max, SZ_STEPS, N_SAMPLES, generator=g)
    x[~mask] = float("nan")
    return (x, mask), mask


def _model(name: str) -> SOZFormer | DCGRUClassifier | DCGRUForecaster | SZLoc:
    torch.manual_seed(0)
    if name == "sozformer":
        return SOZFormer(N_FEAT, **SOZFORMER_SMALL)
    if name == "dcgru":
        return DCGRUClassifier(N_FEAT, **DCGRU_SMALL)
    if name == "forecaster":
        return DCGRUForecaster(N_FEAT, **DCGRU_SMALL)
    return SZLoc(N_SAMPLES, **SZLOC_SMALL)


def _per_channel_outputs(name: str, out: Any) -> dict[str, torch.Tensor]:
    """Outputs indexed (batch, channel, ...) for comparison."""
    if name == "szloc":
        return {
            "soz_logits": out["soz_logits"],
            "channel_logits": out["channel_logits"].transpose(1, 2),
            "onset_map_attn": out["onset_map_attn"],
            "onset_map_chn": out["onset_map_chn"],
        }
    if name == "forecaster":
        return {"pred": out.transpose(1, 2)}
    return {"logits": out}


# ------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", ["sozformer", "dcgru", "forecaster", "szloc"])
@pytest.mark.parametrize("counts", [[1], [3], [1, 4, 2], [5, 5], [0, 3]])
def test_shapes_variable_channel_counts(name: str, counts: list[int]) -> None:
    n_max = max(counts)
    args, mask = _inputs(name, counts, n_max)
    model = _model(name)
    out = model(*args)
    b = len(counts)
    if name == "sozformer" or name == "dcgru":
        assert out.shape == (b, n_max)
        assert torch.isfinite(out).all()
        assert (out[~mask] == 0).all()
    elif name == "forecaster":
        assert out.shape == (b, N_STEPS - 1, n_max, N_FEAT)
        assert torch.isfinite(out).all()
    else:
        assert out["soz_logits"].shape == (b, n_max)
        assert out["channel_logits"].shape == (b, SZ_STEPS, n_max, 2)
        assert out["global_logits"].shape == (b, SZ_STEPS, 2)
        assert out["attention"].shape == (b, SZ_STEPS)
        assert out["onset_map_attn"].shape == (b, n_max)
        assert out["onset_map_chn"].shape == (b, n_max)
        assert all(torch.isfinite(v).all() for v in out.values())
        torch.testing.assert_close(out["attention"].sum(1), torch.ones(b))


@pytest.mark.parametrize("name", ["sozformer", "dcgru", "forecaster", "szloc"])
def test_padding_does_not_change_real_channels(name: str) -> None:
    counts, n_max = [3, 1, 6], 8
    args, _ = _inputs(name, counts, n_max, seed=1)
    model = _model(name).eval()
    with torch.no_grad():
        batched = _per_channel_outputs(name, model(*args))
        for i, n in enumerate(counts):
            single_args = []
            for a in args:
                a = a[i : i + 1]
                graph_model = name in ("dcgru", "forecaster")
                if graph_model and a.ndim == 4 and a.shape[-1] == a.shape[-2] == n_max:
                    a = a[..., :n, :n]  # adjacency
                elif name in ("dcgru", "forecaster") and a.ndim == 4:
                    a = a[:, :, :n]  # (1, steps, n, feat)
                else:
                    a = a[:, :n]
                single_args.append(a)
            single = _per_channel_outputs(name, model(*single_args))
            for key, value in single.items():
                torch.testing.assert_close(batched[key][i, :n], value[0], atol=1e-5, rtol=1e-4,
                                           msg=f"{name}:{key} sample {i}")


@pytest.mark.parametrize("name", ["sozformer", "dcgru", "szloc"])
def test_bf16_autocast_forward_backward(name: str) -> None:
    """The models run forward and backward under bf16 autocast, as a GPU training loop may."""
    args, mask = _inputs(name, [2, 5], 5)
    model = _model(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*args)
        logits = out["soz_logits"] if name == "szloc" else out
        loss = focal_bce(logits, torch.zeros(2, 5), mask)
    loss.backward()
    assert torch.isfinite(loss)


def test_sozformer_permutation_equivariant() -> None:
    model = _model("sozformer").eval()
    (x, mask), _ = _inputs("sozformer", [7], 7, seed=2)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, mask)
        out_perm = model(x[:, perm], mask[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-4)


def test_sozformer_rejects_bad_inputs() -> None:
    model = _model("sozformer")
    x = torch.randn(2, 3, N_CLIPS, N_FEAT)
    with pytest.raises(ValueError, match="mask must have shape"):
        model(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_clips"):
        model(torch.randn(1, 3, 17, N_FEAT), torch.ones(1, 3, dtype=torch.bool))


# -------------------------------------------------------------------------- graphs


def test_dual_random_walk_supports_row_stochastic() -> None:
    g = torch.Generator().manual_seed(0)
    adj = torch.rand(3, 6, 6, generator=g) * (torch.rand(3, 6, 6, generator=g) > 0.5)
    adj[0, 2, :] = 0.0  # node 2 of sample 0 has no out-edges
    adj[1, :, 4] = 0.0  # node 4 of sample 1 has no in-edges
    sup = dual_random_walk_supports(adj)
    assert sup.shape == (3, 2, 6, 6)
    for k, a in enumerate((adj, adj.transpose(-1, -2))):
        walk = sup[:, k].transpose(-1, -2)  # undo the transpose: D^-1 A (or D^-1 A^T)
        deg = a.sum(-1)
        rows = walk.sum(-1)
        torch.testing.assert_close(rows[deg > 0], torch.ones_like(rows[deg > 0]))
        assert (walk[deg == 0] == 0).all()
        assert (walk >= 0).all()
    with pytest.raises(ValueError, match="nonnegative"):
        dual_random_walk_supports(-adj)


@pytest.mark.parametrize("top_k", [1, 3, 10])
def test_correlation_graph_keeps_top_k_and_self_loops(top_k: int) -> None:
    n = 7
    r = _pearson(torch.randn(2, n, 50, generator=torch.Generator().manual_seed(3)))
    r[1, 5, :] = float("nan")  # a flat channel
    r[1, :, 5] = float("nan")
    adj = correlation_graph(r, top_k=top_k)
    k = min(top_k, n - 1)
    assert torch.equal(torch.diagonal(adj, dim1=-2, dim2=-1), torch.ones(2, n))
    off = adj.masked_fill(torch.eye(n, dtype=torch.bool), 0.0)
    a = r.nan_to_num(0.0).abs().masked_fill(torch.eye(n, dtype=torch.bool), 0.0)
    for b in range(2):
        for i in range(n):
            kept = off[b, i].nonzero().flatten()
            if b == 1 and i == 5:
                assert kept.numel() == 0  # NaN row: self loop only
                continue
            top = a[b, i].topk(k).indices
            expected = set(top[a[b, i, top] > 0].tolist())  # zero |r| (NaN, diagonal) is no edge
            if b == 0:
                assert len(expected) == k
            assert set(kept.tolist()) == expected
            torch.testing.assert_close(off[b, i, kept], a[b, i, kept])
    assert not torch.equal(adj, adj.transpose(-1, -2)) or k == n - 1  # directed in general
    assert torch.equal(correlation_graph(torch.ones(1, 1, 1), top_k=3), torch.ones(1, 1, 1))


# ------------------------------------------------------------------ forecaster SSL


def test_forecaster_learns_and_transfers_encoder() -> None:
    torch.manual_seed(0)
    b, t, n = 4, 6, 5
    phase = torch.rand(b, 1, n, 1) * 6.28
    steps = torch.arange(t, dtype=torch.float32)[None, :, None, None]
    x = torch.sin(0.7 * steps + phase + torch.arange(N_FEAT) * 0.3)  # smooth, predictable
    adj = _pearson(torch.randn(b, t, n, 20))
    mask = _mask([5, 3, 4, 5], n)
    model = DCGRUForecaster(N_FEAT, hidden=16, n_layers=1, k_hops=2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(x, adj, mask)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.loss(x, adj, mask, kind="mae").item() > 0

    clf = DCGRUClassifier(N_FEAT, hidden=16, n_layers=1, k_hops=2, dropout=0.0)
    clf.encoder.load_state_dict(model.encoder.state_dict())  # strict: same keys and shapes
    clf_state, model_state = clf.encoder.state_dict(), model.encoder.state_dict()
    for (k1, v1), (k2, v2) in zip(clf_state.items(), model_state.items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert clf(x, adj, mask).shape == (b, n)


# ---------------------------------------------------------------------- SZLoc loss


def _szloc_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    counts, n_max = [4, 6], 6
    mask = _mask(counts, n_max)
    x = torch.randn(2, n_max, SZ_STEPS, N_SAMPLES, generator=g)
    seizure = torch.zeros(2, SZ_STEPS)
    seizure[:, 4:] = 1.0
    soz = torch.zeros(2, n_max)
    soz[0, 1] = 1.0
    soz[1, [0, 2]] = 1.0
    soz[1, 5] = float("nan")  # unknown label
    return x, mask, seizure, soz


def test_szloc_forward_backward_with_loss() -> None:
    model = _model("szloc")
    x, mask, seizure, soz = _szloc_batch()
    out = model(x, mask)
    loss = szloc_loss(out, seizure, soz, mask, exclude=(3, 5))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)
    # soz_logits is differentiable
    model.zero_grad()
    model(x, mask)["soz_logits"][mask].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_szloc_loss_ignores_excluded_steps() -> None:
    model = _model("szloc").eval()
    x, mask, seizure, soz = _szloc_batch(1)
    with torch.no_grad():
        out = model(x, mask)
    base = szloc_loss(out, seizure, soz, mask, exclude=(3, 5))
    flipped = seizure.clone()
    flipped[:, 3:5] = 1.0 - flipped[:, 3:5]
    assert szloc_loss(out, flipped, soz, mask, exclude=(3, 5)).item() == pytest.approx(
        base.item(), abs=1e-7)
    # ...while outside the excluded slice (or without exclusion) labels matter
    assert szloc_loss(out, flipped, soz, mask, exclude=None).item() != pytest.approx(
        szloc_loss(out, seizure, soz, mask, exclude=None).item(), abs=1e-6)
    outside = seizure.clone()
    outside[:, 0] = 1.0
    assert szloc_loss(out, outside, soz, mask, exclude=(3, 5)).item() != pytest.approx(
        base.item(), abs=1e-6)

    # Gradient of the loss w.r.t. the excluded steps' global logits is exactly zero.
    out = {k: v.clone().requires_grad_(True) for k, v in out.items()}
    szloc_loss(out, seizure, soz, mask, exclude=(3, 5)).backward()
    global_grad, channel_grad = out["global_logits"].grad, out["channel_logits"].grad
    assert global_grad is not None and channel_grad is not None
    assert (global_grad[:, 3:5] == 0).all()
    assert (global_grad[:, :3].abs().sum() > 0)
    assert (channel_grad[:, 3:5] == 0).all()


def test_szloc_loss_padding_and_unknown_soz_ignored() -> None:
    model = _model("szloc").eval()
    x, mask, seizure, soz = _szloc_batch(2)
    with torch.no_grad():
        out = model(x, mask)
    base = szloc_loss(out, seizure, soz, mask, exclude=None)
    soz2 = soz.clone()
    soz2[0, 4:] = 1.0  # padded channels of sample 0
    assert szloc_loss(out, seizure, soz2, mask, exclude=None).item() == pytest.approx(
        base.item(), abs=1e-7)


# --------------------------------------------------------------------------- losses


def test_focal_gamma0_equals_weighted_bce() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, generator=g)
    targets = (torch.rand(4, 9, generator=g) > 0.7).float()
    mask = _mask([9, 5, 1, 7], 9)
    targets[0, 3] = float("nan")
    logits_padded = logits.masked_fill(~mask, float("nan"))
    w = (0.4, 1.6)
    a = focal_bce(logits_padded, targets, mask, gamma=0.0, weights=w)
    b = weighted_bce(logits_padded, targets, mask, weights=w)
    valid = mask & torch.isfinite(targets)
    ref = F.binary_cross_entropy_with_logits(
        logits[valid], targets[valid], weight=torch.where(targets[valid] > 0, w[1], w[0]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, ref)
    # focusing down-weights easy examples, and NaN padding never reaches the gradient
    z = logits_padded.clone().requires_grad_(True)
    focal = focal_bce(z, targets, mask, gamma=2.0, weights=w)
    assert focal < a
    focal.backward()
    assert z.grad is not None
    assert torch.isfinite(z.grad).all() and (z.grad[~valid] == 0).all()
    assert focal_bce(z, targets, torch.zeros_like(mask)).item() == 0.0


def test_class_balanced_weights_saturate_and_rebalance() -> None:
    w_neg, w_pos = class_balanced_weights(900_000, 100_000, beta=0.999)
    assert w_neg + w_pos == pytest.approx(2.0)
    assert w_pos / w_neg == pytest.approx(1.0, abs=1e-6)  # saturated: no rebalancing
    w_neg, w_pos = class_balanced_weights(80_000, 8_000, beta=0.999)
    assert w_pos / w_neg == pytest.approx(1.0, abs=1e-3)
    # unique (patient, channel) counts: real rebalancing
    w_neg, w_pos = class_balanced_weights(900, 100, beta=0.999)
    assert w_neg + w_pos == pytest.approx(2.0)
    assert w_pos / w_neg > 4.0
    expected = (1 - 0.999**900) / (1 - 0.999**100)
    assert w_pos / w_neg == pytest.approx(expected, rel=1e-9)
    assert class_balanced_weights(90, 10, beta=0.0) == pytest.approx((1.0, 1.0))
    w_neg, w_pos = class_balanced_weights(90, 10, beta=0.99999)
    assert w_pos / w_neg == pytest.approx(9.0, rel=1e-3)  # beta -> 1: inverse frequency
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights(10, 10, beta=1.0)
    with pytest.raises(ValueError, match="at least one"):
        class_balanced_weights(10, 0)


# ------------------------------------------------------------------- tiny training


def _synthetic_soz(
    n_samples: int, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """Padded channel sets where SOZ channels have a higher feature mean."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(4, 12, (n_samples,), generator=g).tolist()
    mask = _mask(counts, 11)
    soz = ((torch.rand(n_samples, 11, generator=g) < 0.25) & mask).float()
    soz[:, 0] = 1.0  # every sample has at least one SOZ channel
    return mask, soz, g


def _auroc(logits: torch.Tensor, soz: torch.Tensor, mask: torch.Tensor) -> float:
    return roc_auc_score(soz[mask].numpy(), logits.detach()[mask].numpy())


def _train(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], soz: torch.Tensor,
           mask: torch.Tensor, *, steps: int, lr: float) -> float:
    weights = class_balanced_weights(int((mask & (soz == 0)).sum()), int((soz[mask] == 1).sum()))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        focal_bce(model(*inputs), soz, mask, weights=weights).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return _auroc(model(*inputs), soz, mask)


def test_sozformer_learns_synthetic_soz() -> None:
    torch.manual_seed(0)
    mask, soz, g = _synthetic_soz(16, seed=0)
    x = torch.randn(16, 11, N_CLIPS, N_FEAT, generator=g) + 0.8 * soz[:, :, None, None]
    model = SOZFormer(N_FEAT, d_model=32, n_heads=4, n_temporal_layers=1, n_spatial_layers=1,
                      dim_feedforward=64, dropout=0.0, max_clips=8)
    assert _train(model, (x, mask), soz, mask, steps=40, lr=3e-3) > 0.9


def test_dcgru_learns_synthetic_soz() -> None:
    torch.manual_seed(0)
    mask, soz, g = _synthetic_soz(16, seed=1)
    x = torch.randn(16, N_STEPS, 11, N_FEAT, generator=g) + 0.8 * soz[:, None, :, None]
    adj = _pearson(torch.randn(16, N_STEPS, 11, 32, generator=g))
    model = DCGRUClassifier(N_FEAT, hidden=16, n_layers=1, k_hops=2, dropout=0.0)
    assert _train(model, (x, adj, mask), soz, mask, steps=40, lr=1e-2) > 0.9


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_round_trip(name: str) -> None:
    model = _model(name)
    config = model.get_config()
    rebuilt = build_model(name, config)
    assert type(rebuilt) is type(model)
    assert rebuilt.get_config() == config
    rebuilt.load_state_dict(model.state_dict())  # same architecture
    assert set(config) >= {"dropout"}
    sizes_only = {k: v for k, v in config.items() if k in ("n_features", "n_samples")}
    default = MODELS[name].from_config(sizes_only)
    assert sum(p.numel() for p in default.parameters()) > sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="unknown keys"):
        MODELS[name].from_config({**config, "n_chans": 19})


def test_build_model_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", {})
    fc = DCGRUForecaster.from_config(DCGRUForecaster(N_FEAT, **DCGRU_SMALL).get_config())
    assert fc.get_config()["hidden"] == DCGRU_SMALL["hidden"]
    assert math.isclose(fc.get_config()["dropout"], 0.1)


@pytest.mark.parametrize("name", ["sozformer", "dcgru", "szloc"])
def test_full_size_configs_build_and_take_a_step(name: str) -> None:
    """The published sizes (`sozstore demo --full-size`) build from their configs and train."""
    from sozstore.models.registry import REGISTRY, build_estimator

    est = build_estimator(name, REGISTRY[name].full)
    torch.manual_seed(0)
    model = est._build(N_FEAT)
    cfg = est.config
    counts, n_max = [5, 3], 5
    mask = _mask(counts, n_max)
    if name == "sozformer":
        args: tuple = (torch.randn(2, n_max, cfg.n_clips, N_FEAT), mask)
    elif name == "dcgru":
        adj = _pearson(torch.randn(2, cfg.n_steps, n_max, 32))
        args = (torch.randn(2, cfg.n_steps, n_max, N_FEAT), adj, mask)
    else:
        args = (torch.randn(2, n_max, cfg.raw_steps, model.n_samples), mask)
    out = model(*args)
    logits = out["soz_logits"] if name == "szloc" else out
    assert logits.shape == (2, n_max)
    loss = F.binary_cross_entropy_with_logits(logits[mask], torch.zeros(int(mask.sum())))
    if name == "szloc":  # its other heads train through its multi-task loss
        loss = loss + sum(v.square().mean() for k, v in out.items() if k != "soz_logits")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert sum(p.numel() for p in model.parameters()) > 20_000  # not the demo's sizes
