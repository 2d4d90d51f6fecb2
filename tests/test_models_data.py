"""Streaming datasets, sharding, the evaluation protocol and the clinical baselines."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch.utils.data import DataLoader

from sozstore.models import baselines
from sozstore.models.datasets import (
    ClipSequenceDataset,
    GraphSequenceDataset,
    RawWindowDataset,
    collate_padded,
    epoch_units,
    make_loader,
    shard_units,
)
from sozstore.models.inputs import (
    N_CLIP_FEATURES,
    RecordingInfo,
    channel_table,
    recording_table,
    subject_keys,
)
from sozstore.models.metrics import channel_metrics, youden_threshold
from sozstore.models.splits import (
    LeakageError,
    check_disjoint,
    leave_one_site_out,
    patient_kfold,
)


def _fake_recordings(n: int = 7) -> list[RecordingInfo]:
    return [RecordingInfo(f"r{i}", "s", f"p{i % 3}", n_clips=10 + 7 * i, zarr_path="",
                          channels=("A1",), labels=(1.0,), onsets_s=()) for i in range(n)]


@pytest.mark.parametrize("world_size, num_workers", [(1, 1), (1, 3), (2, 2), (3, 1)])
def test_shards_have_no_duplicates_or_omissions(world_size: int, num_workers: int) -> None:
    units = epoch_units(_fake_recordings(), window=4, epoch=3, seed=1, random_offsets=True,
                        shuffle=True)
    n = world_size * num_workers
    got = Counter()
    for rank in range(world_size):
        for worker in range(num_workers):
            got.update(shard_units(units, global_id=rank * num_workers + worker, global_n=n,
                                   equalize=False))
    assert got == Counter(units)
    sizes = [len(shard_units(units, global_id=g, global_n=n, equalize=True)) for g in range(n)]
    assert len(set(sizes)) == 1 and sizes[0] == math.ceil(len(units) / n)


def test_units_deterministic_per_epoch_and_random_offsets() -> None:
    recs = _fake_recordings()
    a = epoch_units(recs, window=4, epoch=0, seed=5, random_offsets=True, shuffle=True)
    b = epoch_units(recs, window=4, epoch=0, seed=5, random_offsets=True, shuffle=True)
    c = epoch_units(recs, window=4, epoch=1, seed=5, random_offsets=True, shuffle=True)
    assert a == b and a != c
    tiled = epoch_units(recs, window=4, epoch=0, seed=5, random_offsets=False, shuffle=False)
    assert [u.start for u in tiled if u.recording == 0] == [0, 4]


def test_dataloader_workers_cover_each_window_once(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    recs = recording_table(store)
    ds = ClipSequenceDataset(store, recs, n_clips=4, seed=3)
    seen = Counter()
    for batch in make_loader(ds, batch_size=3, num_workers=2):
        seen.update((m["recording_id"], m["start"]) for m in batch["meta"])
    expected = Counter((recs[u.recording].recording_id, u.start) for u in ds.units())
    assert seen == expected


def test_samples_shapes_masks_and_no_time_input(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    recs = recording_table(store)
    batch = next(iter(DataLoader(ClipSequenceDataset(store, recs, n_clips=5), batch_size=4,
                                 collate_fn=collate_padded)))
    b, c = batch["mask"].shape
    assert batch["x"].shape == (b, c, 5, N_CLIP_FEATURES)
    for i, meta in enumerate(batch["meta"]):
        n = len(meta["channels"])
        assert batch["mask"][i, :n].all() and not batch["mask"][i, n:].any()
        assert torch.isnan(batch["y"][i, n:]).all()
    assert set(batch) == {"x", "y", "valid", "mask", "meta"}  # time only in meta
    g = next(iter(DataLoader(GraphSequenceDataset(store, recs, n_steps=6), batch_size=2,
                             collate_fn=collate_padded)))
    assert g["x"].shape[1] == 6 and g["adj"].shape[-1] == g["adj"].shape[-2] == g["x"].shape[2]
    r = next(iter(DataLoader(RawWindowDataset(store, recs, n_steps=30), batch_size=2,
                             collate_fn=collate_padded)))
    assert r["x"].shape[2:] == (30, 200) and r["seizure"].shape == (2, 30)
    assert all(15 <= m["onset_step"] <= 30 for m in r["meta"])


def test_folds_are_patient_disjoint_and_stratified(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    subjects = subject_keys(store)
    folds = patient_kfold(subjects, 3, seed=0)
    tests = [k for f in folds for k in f.test]
    assert sorted(tests) == sorted(subjects["key"])  # every patient tested exactly once
    for f in folds:
        check_disjoint(f.train, f.validation, f.test)
        assert len({k.split("/")[0] for k in f.test}) == 2 or len(f.test) < 3
    loso = leave_one_site_out(subjects)
    assert sorted(f.name for f in loso) == ["site-chul", "site-hup", "site-multicenter"]
    with pytest.raises(LeakageError):
        check_disjoint(("a/1", "b/2"), ("b/2",))


def test_youden_and_patient_macro_metrics() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.4, 0.35])
    assert youden_threshold(y, s) == pytest.approx(0.35)
    frame = pl.DataFrame({"key": ["a"] * 4 + ["b"] * 3, "site": ["x"] * 7,
                          "label": y.astype(bool), "score": s})
    m = channel_metrics(frame, 0.35)
    assert m["auroc"] == pytest.approx(11 / 12)  # one positive (0.35) below a negative (0.4)
    assert m["patient_auroc_mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["recall_mean"] == pytest.approx(1.0)
    assert m["specificity_mean"] == pytest.approx((1.0 + 0.0) / 2)
    none = channel_metrics(frame, 5.0)
    assert none["precision_mean"] == 0.0 and none["n_no_positive"] == 2


def test_epileptogenicity_index_finds_the_early_fast_contact() -> None:
    rng = np.random.default_rng(0)
    sfreq, n = 250.0, 250 * 40
    x = rng.standard_normal((3, n)) * 10
    t = np.arange(n) / sfreq
    x[0] += np.where(t > 20.0, 30 * np.sin(2 * np.pi * 40 * t), 0)   # fast at onset
    x[1] += np.where(t > 26.0, 30 * np.sin(2 * np.pi * 40 * t), 0)   # late spread
    ei = baselines.epileptogenicity_index(x, sfreq, 20.0)
    assert ei[0] == 1.0 and 0 < ei[1] < 0.5 and ei[2] == 0.0


def test_channel_table_joins_labels(phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    table = channel_table(store)
    assert table["soz"].sum() > 0
    assert {"spike_rate", "ripple_rate", "wpt_rel_0", "log_gamma"} <= set(table.columns)


def test_persistent_workers_follow_set_epoch(phantom_store: tuple[Path, Path]) -> None:
    # the loader's workers start once and hold a pickled copy of the dataset: each epoch
    # must still be exactly the windows that set_epoch drew for it
    store, _ = phantom_store
    recs = recording_table(store)
    ds = ClipSequenceDataset(store, recs, n_clips=4, seed=3)
    loader = make_loader(ds, batch_size=3, num_workers=2)
    epochs, pids = [], []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        seen = Counter()
        for batch in loader:
            seen.update((m["recording_id"], m["start"]) for m in batch["meta"])
        pids.append([w.pid for w in loader._iterator._workers])  # type: ignore[union-attr]
        expected = Counter((recs[u.recording].recording_id, u.start) for u in ds.units())
        assert seen == expected
        epochs.append(seen)
    assert epochs[0] != epochs[1] and epochs[0] == epochs[2]
    assert len(pids[0]) == 2 and pids[0] == pids[1] == pids[2]  # started once


def test_byte_bounded_cache_keeps_within_budget() -> None:
    from sozstore.models.inputs import ByteBoundedCache

    cache = ByteBoundedCache(max_bytes=3000)
    built: list[str] = []

    def build(key: str, n: int) -> np.ndarray:
        built.append(key)
        return np.zeros(n, dtype=np.uint8)

    for key in ("a", "b", "c"):
        cache.get(key, lambda k=key: build(k, 1000))
    cache.get("a", lambda: build("a", 1000))        # a hit, and now the most recent
    cache.get("d", lambda: build("d", 1000))        # b (least recent) leaves
    assert cache.nbytes == 3000 and len(cache) == 3
    cache.get("a", lambda: build("a", 1000))
    cache.get("b", lambda: build("b", 1000))
    assert built == ["a", "b", "c", "d", "b"]
    big = cache.get("big", lambda: build("big", 5000))   # over the budget: returned, not kept
    assert big.nbytes == 5000 and cache.nbytes <= 3000 and len(cache) == 3
    tuple_cache = ByteBoundedCache(max_bytes=10_000)
    tuple_cache.get("t", lambda: (np.zeros(10, np.float32), np.zeros(10, bool)))
    assert tuple_cache.nbytes == 50


def test_collate_pads_once_with_the_fill_values() -> None:
    clip = [{"x": torch.randn(c, 3, 2), "valid": torch.rand(c, 3) > 0.5, "y": torch.rand(c),
             "meta": {"c": c}} for c in (2, 4)]
    out = collate_padded(clip)
    assert out["x"].shape == (2, 4, 3, 2) and out["valid"].dtype == torch.bool
    assert torch.equal(out["x"][0, :2], clip[0]["x"]) and (out["x"][0, 2:] == 0).all()
    assert torch.isnan(out["y"][0, 2:]).all() and torch.equal(out["y"][1], clip[1]["y"])
    assert not out["valid"][0, 2:].any() and out["mask"].tolist() == [[True, True, False,
                                                                        False], [True] * 4]
    graph = [{"x": torch.randn(3, c, 2), "adj": torch.randn(3, c, c), "y": torch.rand(c),
              "meta": {}} for c in (3, 1)]
    g = collate_padded(graph)
    assert g["x"].shape == (2, 3, 3, 2) and g["adj"].shape == (2, 3, 3, 3)
    assert torch.equal(g["adj"][1, :, :1, :1], graph[1]["adj"]) and (g["adj"][1, :, 1:] == 0).all()
