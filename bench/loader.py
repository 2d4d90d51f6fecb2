#!/usr/bin/env python
"""Streaming-dataset throughput beside a raw Zarr read ceiling and an MNE-per-window baseline,
and the training step time of the torch models on real batches.

Input (generated once into ``bench/out/loader_work/`` and reused between runs): the demo cohort
``sozstore.phantom.generate_cohort(cohort, subjects_per_site=4, seed=3,
config=PhantomConfig(chul_interictal_hours=5/60))``, each of hup, multicenter and chul ingested
with ``sozstore.etl.pipeline.run_site(load_site_config(cohort/sites/<site>.toml), store,
workers=2, progress=False)`` and the default features computed with
``sozstore.etl.features.engine.compute_features(store, workers=2, progress=False)``. The
cohort's source files (``cohort/raw/<site>/``) are kept for the MNE baseline.

Measured in the same run, over every recording of ``recording_table(store)``:

1. ``ClipSequenceDataset(n_clips=25)``, ``GraphSequenceDataset(n_steps=12)`` and
   ``RawWindowDataset(n_steps=45)`` (training mode: ``shuffle=True, random_offsets=True``,
   seed 0) through ``make_loader(ds, batch_size=8, num_workers=W)`` for W = 0 and 2: windows
   (sequences) per second and MB/s (bytes of every tensor of the collated batches: x, y,
   mask, valid / adj / seizure), for the first epoch with cold caches (the store's files
   dropped from the page cache with ``posix_fadvise(DONTNEED)`` and the in-process caches
   of ``sozstore.models.inputs`` cleared) and the second epoch (``ds.set_epoch(1)``, nothing
   cleared) of one loader, as ``TorchEstimator.fit`` iterates one loader: its workers start
   in the first epoch (included in its time; time to first batch is reported as well) and
   persist, with their caches, into the second.
2. The raw Zarr ceiling: the same epochs' windows (same recordings, same positions and
   spans: ``n_clips * 5 s``, ``n_steps * 5 s``, ``45 s``) read with
   ``open_signals(zarr).read(t0, t1)`` of all channels (one reader per recording), nothing
   else; cold (page cache dropped) for epoch 0, warm for epoch 1.
3. The MNE baseline: the same windows read from the cohort's *source* files (EDF or
   BrainVision under ``cohort/raw/<site>/``, ``recordings.source_path``) with
   ``mne.io.read_raw(path, preload=False)`` + ``raw.get_data(start, stop)`` per window, all
   channels, the file opened for every window (as a per-sample ``__getitem__`` does); also the
   variant that keeps one open ``Raw`` per file (the stronger baseline). Cold and warm as for 2.

   Ratios are windows/s of the dataset over windows/s of the baseline for the same epoch
   (cold with cold, warm with warm): > 1 means the dataset delivers windows faster. The
   baselines deliver raw samples, the clip and graph datasets deliver feature windows (their
   span of signal is not read at all), so the ratios say how a training loop fed from the
   store compares with one that cuts the same windows out of the source files.
4. Training step time per model (sozformer, dcgru, szloc) at the demo sizes
   (``sozstore.models.registry.REGISTRY[name].demo['model']``) and the default sizes, built
   the way ``TorchEstimator`` builds them (``build_estimator(name, {"model": ...})._build``,
   which adds the per-model defaults), fed real batches of the loaders above (batch 8; szloc
   4; windows of 25 clips, 12 steps, 45 s) and stepped the way ``TorchEstimator.fit`` does
   (forward, loss, backward, gradient clipping, AdamW step) on the CPU: median seconds per
   step after 2 warm-up steps, with torch's default intra-op threads (what
   ``TorchEstimator`` runs with: one per core) and, on the same model, with
   ``torch.set_num_threads(1)``; and the number of parameters. The loader's warm seconds per
   batch (W = 0) are shown beside it.

Rows of 1-3 are the fastest of ``--repeats`` runs (the machine may be shared: the fastest run
is the least disturbed; every run is in the JSON); W = 2 rows are one run (starting the workers
dominates them). Training steps are timed with one thread first, then the default threads
after one more warm-up step; a setting stops after ``--step-cap`` seconds of timed steps (at
least one step; the table then gives the count). ``--quick`` uses one subject per site,
one run, W = 2 for the clip dataset only, demo sizes with default threads and one timed step.

Usage::

    python bench/loader.py            # full run (~7 min once the store exists; building it ~5 min)
    python bench/loader.py --quick    # smoke run (< 2 min once the store exists)
    python bench/loader.py --profile  # also cProfile one warm epoch of each dataset (W = 0)

Results: ``bench/out/loader[-quick].json``, markdown tables on stdout and a section for
``bench/RESULTS.md`` in ``bench/out/loader_section[-quick].md``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, command_line, evict, files_under, machine, md_table, write_json

WORK = OUT / "loader_work"
COHORT = WORK / "cohort"
STORE = WORK / "store"
SITES = ("hup", "multicenter", "chul")
CLIP_S = 5.0
BATCH = 8
MB = 1e6
DATASETS = ("clip", "graph", "raw")
DATASET_NAMES = {"clip": "ClipSequenceDataset(n_clips=25)",
                 "graph": "GraphSequenceDataset(n_steps=12)",
                 "raw": "RawWindowDataset(n_steps=45)"}
MODELS = {"sozformer": "clip", "dcgru": "graph", "szloc": "raw"}
WARMUP = 2


# --------------------------------------------------------------------------- inputs
def ensure_store() -> dict[str, Any]:
    """The cached cohort and store (built when missing): generation, ETL, features."""
    done = STORE / ".bench-complete"
    info: dict[str, Any] = {"cohort": str(COHORT.relative_to(OUT.parent.parent)),
                            "store": str(STORE.relative_to(OUT.parent.parent))}
    from sozstore.etl.features.engine import compute_features

    if done.exists() and (COHORT / "raw").exists():
        # a cached store from before a feature-set version bump: bring it up to date
        # (compute_features skips every partition that already is)
        compute_features(STORE, workers=2, progress=False)
        info["built"] = done.read_text().strip()
        return info
    from sozstore.etl.config import load_site_config
    from sozstore.etl.pipeline import run_site
    from sozstore.phantom import PhantomConfig, generate_cohort

    shutil.rmtree(COHORT, ignore_errors=True)
    shutil.rmtree(STORE, ignore_errors=True)
    print("building the cohort store (once, ~5 min) ...", flush=True)
    t0 = time.perf_counter()
    generate_cohort(COHORT, subjects_per_site=4, seed=3,
                    config=PhantomConfig(chul_interictal_hours=5 / 60))
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    for site in SITES:
        report = run_site(load_site_config(COHORT / "sites" / f"{site}.toml"), STORE,
                          workers=2, progress=False)
        if report.exit_code != 0:
            raise RuntimeError(f"ETL of {site} failed: {report}")
    etl = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = compute_features(STORE, workers=2, progress=False)
    if feats.exit_code != 0:
        raise RuntimeError(f"features failed: {feats.failed}")
    fts = time.perf_counter() - t0
    done.write_text(f"generate {gen:.0f} s, etl {etl:.0f} s, features {fts:.0f} s\n")
    info["built"] = done.read_text().strip()
    return info


def describe_store(recs: list[Any]) -> dict[str, Any]:
    import polars as pl

    from sozstore.store import Store

    ids = {r.recording_id for r in recs}
    rows = Store.open(STORE).read("recordings").filter(pl.col("recording_id").is_in(list(ids)))
    n_ch = [len(r.channels) for r in recs]
    store_channels = rows["n_channels"].median()
    assert isinstance(store_channels, (int, float))  # the median of an integer column
    return {
        "recordings": len(recs),
        "subjects": len({(r.site, r.subject) for r in recs}),
        "hours": float(rows["duration_s"].sum()) / 3600,
        "model_channels_min_median_max": [min(n_ch), int(np.median(n_ch)), max(n_ch)],
        "store_channels_median": int(store_channels),
        "store_sfreq": sorted({float(x) for x in rows["sfreq"].to_list()}),
        "source_sfreq": sorted({round(float(x), 1) for x in rows["source_sfreq"].to_list()}),
        "source_formats": sorted(set(rows["source_format"].to_list())),
        "recordings_with_onsets": sum(1 for r in recs if r.onsets_s),
        "store_files": len(files_under(STORE)),
    }


def quick_subset(recs: list[Any]) -> list[Any]:
    """The recordings of the first subject of each site."""
    first: dict[str, str] = {}
    for r in recs:
        first.setdefault(r.site, r.subject)
    return [r for r in recs if first[r.site] == r.subject]


# --------------------------------------------------------------------------- helpers
def make_dataset(kind: str, recs: list[Any], **kw: Any) -> Any:
    from sozstore.models.datasets import (
        ClipSequenceDataset,
        GraphSequenceDataset,
        RawWindowDataset,
    )

    kw = {"seed": 0, "shuffle": True, "random_offsets": True} | kw
    if kind == "clip":
        return ClipSequenceDataset(STORE, recs, n_clips=25, **kw)
    if kind == "graph":
        return GraphSequenceDataset(STORE, recs, n_steps=12, **kw)
    return RawWindowDataset(STORE, recs, n_steps=45, **kw)


def window_spans(ds: Any, epoch: int) -> list[tuple[Any, float, float]]:
    """(recording, t0, t1) in seconds of every window of an epoch, as the dataset cuts them
    (the signal span a window covers; for raw windows the same jittered start)."""
    from sozstore.models.datasets import RawWindowDataset
    from sozstore.store import Store
    from sozstore.store.signals import open_signals

    ds.set_epoch(epoch)
    spans = []
    durations: dict[str, float] = {}
    for unit in ds.my_units():
        rec = ds.recordings[unit.recording]
        if isinstance(ds, RawWindowDataset):  # same arithmetic as RawWindowDataset.sample
            onset = rec.onsets_s[unit.start]
            rng = np.random.default_rng([ds.seed, ds.epoch, unit.recording, unit.start])
            jitter = int(rng.integers(1, 15))
            if rec.recording_id not in durations:
                durations[rec.recording_id] = open_signals(
                    Store.open(STORE).signal_path(rec.zarr_path)).duration
            start = float(np.clip(onset - 15.0 - jitter, 0.0,
                                  max(0.0, durations[rec.recording_id] - ds.window)))
            spans.append((rec, start, start + ds.window))
        else:
            t0 = unit.start * CLIP_S
            spans.append((rec, t0, t0 + ds.window * CLIP_S))
    return spans


def recording_loads(kind: str, ds: Any, epoch: int, num_workers: int) -> int:
    """Per-recording loads of an epoch over all workers of one loader iterated from epoch 0:
    feature matrices built (clip, graph: each worker keeps what it built for the whole run,
    this cohort's matrices being far below ``INPUT_CACHE_BYTES``) or Zarr groups opened
    (raw: one reader per recording and process)."""
    from sozstore.models.datasets import shard_units

    n = max(1, num_workers)
    seen: list[set[int]] = [set() for _ in range(n)]
    loads = 0
    for e in range(epoch + 1):
        ds.set_epoch(e)
        units = ds.units()
        for i in range(n):
            mine = {u.recording for u in shard_units(units, global_id=i, global_n=n,
                                                     equalize=False)}
            if e == epoch:
                loads = loads + len(mine - seen[i])
            seen[i] |= mine
    return loads


def tensor_bytes(batch: dict[str, Any]) -> int:
    import torch

    return sum(v.numel() * v.element_size() for v in batch.values()
               if isinstance(v, torch.Tensor))


def clear_process_caches() -> None:
    from sozstore.models import inputs

    inputs.clear_input_caches()
    gc.collect()


_STORE_FILES: list[Path] = []


def drop_store_from_page_cache() -> None:
    if not _STORE_FILES:
        _STORE_FILES.extend(files_under(STORE))
    evict(_STORE_FILES)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "all_seconds": [round(r["seconds"], 3) for r in runs]}


# --------------------------------------------------------------------------- 1. datasets
def run_epoch(ds: Any, epoch: int, num_workers: int, loader: Any = None) -> dict[str, Any]:
    """One epoch of ``loader`` (a new ``make_loader`` when omitted)."""
    from sozstore.models.datasets import make_loader

    ds.set_epoch(epoch)
    if loader is None:
        loader = make_loader(ds, batch_size=BATCH, num_workers=num_workers)
    la = loadavg()
    t0 = time.perf_counter()
    first = None
    n_seq = n_bytes = n_batches = 0
    for batch in loader:
        if first is None:
            first = time.perf_counter() - t0
        n_seq += len(batch["meta"])
        n_bytes += tensor_bytes(batch)
        n_batches += 1
    sec = time.perf_counter() - t0
    del loader
    return {"epoch": epoch, "seconds": sec, "first_batch_s": first, "windows": n_seq,
            "batches": n_batches, "bytes": n_bytes, "windows_per_s": n_seq / sec,
            "mb_per_s": n_bytes / MB / sec, "loadavg": la}


def bench_dataset(kind: str, recs: list[Any], num_workers: int) -> dict[str, Any]:
    """One cold epoch (page cache dropped, process caches cleared) and one warm epoch."""
    from sozstore.models.datasets import make_loader

    ds = make_dataset(kind, recs)
    clear_process_caches()
    drop_store_from_page_cache()
    # one loader for both epochs, as TorchEstimator.fit iterates one loader (its workers
    # persist and keep their caches)
    loader = make_loader(ds, batch_size=BATCH, num_workers=num_workers)
    cold = run_epoch(ds, 0, num_workers, loader)
    warm = run_epoch(ds, 1, num_workers, loader)
    del loader
    cold["recording_loads"] = recording_loads(kind, ds, 0, num_workers)
    warm["recording_loads"] = recording_loads(kind, ds, 1, num_workers)
    return {"cold": cold, "warm": warm}


# --------------------------------------------------------------------------- 2. Zarr ceiling
def _read_rates(sec: float, windows: int, n_bytes: int, n_samples: int, la: float
                ) -> dict[str, Any]:
    """The row of one baseline reader's pass over the windows."""
    return {"seconds": sec, "windows": windows, "bytes": n_bytes,
            "windows_per_s": windows / sec, "mb_per_s": n_bytes / MB / sec,
            "msamples_per_s": n_samples / 1e6 / sec, "loadavg": la}


def bench_zarr(spans: list[tuple[Any, float, float]], *, cold: bool) -> dict[str, Any]:
    from sozstore.store import Store
    from sozstore.store.signals import open_signals

    store = Store.open(STORE)
    if cold:
        drop_store_from_page_cache()
    readers: dict[str, Any] = {}
    n_bytes = n_samples = 0
    la = loadavg()
    t0 = time.perf_counter()
    for rec, a, b in spans:
        sig = readers.get(rec.recording_id)
        if sig is None:
            sig = readers[rec.recording_id] = open_signals(store.signal_path(rec.zarr_path))
        x = sig.read(a, b)
        n_bytes += x.nbytes
        n_samples += x.size
    return _read_rates(time.perf_counter() - t0, len(spans), n_bytes, n_samples, la)


# --------------------------------------------------------------------------- 3. MNE baseline
def source_info(recs: list[Any]) -> dict[str, tuple[Path, float]]:
    from sozstore.store import Store

    wanted = {r.recording_id for r in recs}
    out = {}
    for r in Store.open(STORE).read("recordings").iter_rows(named=True):
        if r["recording_id"] not in wanted:
            continue
        path = COHORT / "raw" / r["site"] / r["source_path"]
        if not path.exists():
            raise FileNotFoundError(f"source file of {r['recording_id']} not found: {path}")
        out[r["recording_id"]] = (path, float(r["source_sfreq"]))
    return out


def _source_files(sources: dict[str, tuple[Path, float]]) -> list[Path]:
    """The source files and their companions (BrainVision .vhdr/.vmrk/.eeg)."""
    files: list[Path] = []
    for path, _ in sources.values():
        files.extend(p for p in path.parent.iterdir() if p.is_file() and p.stem == path.stem)
    return files


def bench_mne(spans: list[tuple[Any, float, float]], sources: dict[str, tuple[Path, float]],
              *, cold: bool, open_per_window: bool) -> dict[str, Any]:
    import mne

    if cold:
        evict(_source_files(sources))
    raws: dict[str, Any] = {}
    n_bytes = n_samples = 0
    la = loadavg()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec, a, b in spans:
            path, sf = sources[rec.recording_id]
            raw = None if open_per_window else raws.get(rec.recording_id)
            if raw is None:
                raw = mne.io.read_raw(path, preload=False, verbose="error")
                if not open_per_window:
                    raws[rec.recording_id] = raw
            x = raw.get_data(start=round(a * sf), stop=round(b * sf))
            n_bytes += x.nbytes
            n_samples += x.size
    return _read_rates(time.perf_counter() - t0, len(spans), n_bytes, n_samples, la)


READERS = ("zarr", "mne_open_per_window", "mne_open_once")


def bench_baselines(kind: str, recs: list[Any], sources: dict[str, tuple[Path, float]]
                    ) -> dict[str, Any]:
    """Cold (epoch 0's windows, files dropped from the page cache) and warm (epoch 1's
    windows right after, the files cached) for each reader."""
    ds = make_dataset(kind, recs)
    spans = {"cold": window_spans(ds, 0), "warm": window_spans(ds, 1)}
    out: dict[str, Any] = {}
    for reader in READERS:
        out[reader] = {}
        for ep in ("cold", "warm"):
            if reader == "zarr":
                out[reader][ep] = bench_zarr(spans[ep], cold=ep == "cold")
            else:
                out[reader][ep] = bench_mne(spans[ep], sources, cold=ep == "cold",
                                            open_per_window=reader == "mne_open_per_window")
    return out


# --------------------------------------------------------------------------- 4. training steps
def collect_batches(kind: str, recs: list[Any], n: int) -> list[dict]:
    """``n`` real batches of the loader (cycling through epochs if one has fewer)."""
    from sozstore.models.datasets import make_loader

    ds = make_dataset(kind, recs)
    batch_size = 4 if kind == "raw" else BATCH  # TorchEstimator's szloc default
    batches: list[dict] = []
    epoch = 0
    while len(batches) < n:
        ds.set_epoch(epoch)
        for b in make_loader(ds, batch_size=batch_size, num_workers=0):
            batches.append(b)
            if len(batches) >= n:
                break
        epoch += 1
    return batches


def bench_train(name: str, size: str, model_cfg: dict[str, Any], batches: list[dict], *,
                steps: int, thread_settings: list[int], cap_s: float) -> dict[str, Any]:
    """2 warm-up steps, then ``steps`` timed steps per thread setting (same model; one more
    warm-up step after a change of threads); fewer (at least one) once the timed steps of a
    setting exceed ``cap_s`` seconds."""
    import torch

    from sozstore.models.inputs import N_CLIP_FEATURES
    from sozstore.models.registry import build_estimator

    torch.manual_seed(0)
    est: Any = build_estimator(name, {"model": model_cfg} if model_cfg else {})
    device = torch.device("cpu")
    est.weights_ = (1.0, 3.0)  # focal BCE class weights (values do not change the cost)
    model = est._build(N_CLIP_FEATURES).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=est.config.lr,
                            weight_decay=est.config.weight_decay)
    model.train()
    k = 0

    def step() -> float:
        nonlocal k
        batch = batches[k % len(batches)]
        k += 1
        t0 = time.perf_counter()
        loss = est.train_step(model, opt, batch, device)
        sec = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name} {size}: non-finite loss at step {k}")
        return sec

    default_threads = torch.get_num_threads()
    res: dict[str, Any] = {"model": name, "size": size, "config": dict(est.config.model),
                           "params": n_params, "batch_size": int(batches[0]["x"].shape[0]),
                           "x_shapes": [list(s) for s in
                                        sorted({tuple(b["x"].shape) for b in batches})],
                           "warmup": WARMUP, "steps": steps, "threads": {}}
    try:
        for i, threads in enumerate(thread_settings):
            torch.set_num_threads(threads)
            # 2 warm-up steps before the first setting; one more when the thread count
            # changes (the new OpenMP team starts)
            warm = [step() for _ in range(WARMUP if i == 0 else 1)]
            la = loadavg()
            times: list[float] = []
            while len(times) < steps and (not times or sum(times) < cap_s):
                times.append(step())
            res["threads"][str(threads)] = {"median_step_s": statistics.median(times),
                                            "all_step_s": times, "warmup_s": warm,
                                            "loadavg": la}
    finally:
        torch.set_num_threads(default_threads)
    return res


# --------------------------------------------------------------------------- profile
def profile_datasets(recs: list[Any]) -> dict[str, str]:
    out = {}
    for kind in DATASETS:
        ds = make_dataset(kind, recs)
        run_epoch(ds, 0, 0)
        prof = cProfile.Profile()
        prof.enable()
        run_epoch(ds, 1, 0)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        out[kind] = buf.getvalue()
        print(f"===== cProfile, {DATASET_NAMES[kind]}, warm epoch, W=0\n{out[kind]}")
    return out


# --------------------------------------------------------------------------- reporting
def f(x: float | None, nd: int = 1) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{nd}f}"


def versions() -> dict[str, str]:
    import mne
    import polars
    import pyarrow
    import scipy
    import torch
    import zarr

    import sozstore

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "torch": torch.__version__, "zarr": zarr.__version__,
            "mne": mne.__version__, "polars": polars.__version__,
            "pyarrow": pyarrow.__version__, "sozstore": sozstore.__version__}


EPOCH_LABEL = {"cold": "1 (cold)", "warm": "2 (warm)"}


def tables(res: dict[str, Any]) -> dict[str, str]:
    ds_rows, ratio_rows, base_rows, train_rows = [], [], [], []
    for kind in DATASETS:
        base = res["baselines"][kind]
        for nw in (0, 2):
            r = res["datasets"].get(f"{kind}_w{nw}")
            if r is None:
                continue
            for ep in ("cold", "warm"):
                e = r[ep]
                ds_rows.append([DATASET_NAMES[kind], nw, EPOCH_LABEL[ep], e["windows"],
                                e["recording_loads"], f(e["seconds"], 2),
                                f(e["first_batch_s"], 2), f(e["windows_per_s"]),
                                f(e["mb_per_s"]), f(e["loadavg"], 1)])
                mpw = base["mne_open_per_window"][ep]["windows_per_s"]
                mo = base["mne_open_once"][ep]["windows_per_s"]
                z = base["zarr"][ep]["windows_per_s"]
                w = e["windows_per_s"]
                ratio_rows.append([DATASET_NAMES[kind], nw, EPOCH_LABEL[ep], f(w), f(mpw),
                                   f(w / mpw, 2), f(mo), f(w / mo, 2), f(z), f(w / z, 2)])
        for reader in READERS:
            for ep in ("cold", "warm"):
                b = base[reader][ep]
                span = {"clip": 125, "graph": 60, "raw": 45}[kind]
                base_rows.append([f"{kind} ({span} s)", reader, ep, b["windows"],
                                  f(b["seconds"], 2), f(b["windows_per_s"]), f(b["mb_per_s"]),
                                  f(b["msamples_per_s"])])
    threads = res["train_threads"]
    for t in res["train"]:
        row = [t["model"], t["size"], f"{t['params']:,}", t["batch_size"],
               "x".join(map(str, t["x_shapes"][-1]))]
        for n in threads:
            c = t["threads"].get(str(n))
            if c is None:
                row.append("-")
                continue
            k = len(c["all_step_s"])
            row.append(f(c["median_step_s"], 3) + (f" ({k} step{'s' if k > 1 else ''})"
                                                   if k < t["steps"] else ""))
        row.append(f(t.get("loader_s_per_batch"), 3))
        train_rows.append(row)
    return {
        "datasets": md_table(["dataset", "workers", "epoch", "windows", "recording loads",
                              "s", "first batch s", "windows/s", "MB/s", "load"], ds_rows),
        "ratios": md_table(["dataset", "workers", "epoch", "windows/s",
                            "MNE open/window w/s", "ratio", "MNE open once w/s", "ratio",
                            "Zarr ceiling w/s", "ratio"], ratio_rows),
        "baselines": md_table(["windows (span)", "reader", "cache", "windows", "s",
                               "windows/s", "MB/s", "Msamples/s"], base_rows),
        "train": md_table(["model", "size", "params", "batch", "largest x"]
                          + [f"s/step, {n} thread{'s' if n > 1 else ''}"
                             + (" (default)" if n == res["default_threads"] else "")
                             for n in threads]
                          + ["loader s/batch (W=0, warm)"], train_rows),
    }


def reading(res: dict[str, Any]) -> str:
    """A paragraph reading the tables, from this run's numbers."""
    d, b = res["datasets"], res["baselines"]

    def w(kind: str, nw: int, ep: str) -> float:
        r = d.get(f"{kind}_w{nw}")
        return r[ep]["windows_per_s"] if r else float("nan")

    def ratio(kind: str, reader: str, nw: int = 0, ep: str = "warm") -> float:
        return w(kind, nw, ep) / b[kind][reader][ep]["windows_per_s"]

    s = []
    s.append(
        f"Single-process (W=0) warm epochs deliver {f(w('clip', 0, 'warm'))} clip windows/s, "
        f"{f(w('graph', 0, 'warm'))} graph windows/s and {f(w('raw', 0, 'warm'))} raw windows/s: "
        f"{f(ratio('clip', 'mne_open_per_window'), 2)}x, "
        f"{f(ratio('graph', 'mne_open_per_window'), 2)}x and "
        f"{f(ratio('raw', 'mne_open_per_window'), 2)}x the MNE per-window reads of the same "
        f"spans ({f(ratio('clip', 'mne_open_once'), 2)}x, "
        f"{f(ratio('graph', 'mne_open_once'), 2)}x, {f(ratio('raw', 'mne_open_once'), 2)}x "
        f"with the files kept open), and {f(ratio('clip', 'zarr'), 2)}x, "
        f"{f(ratio('graph', 'zarr'), 2)}x, {f(ratio('raw', 'zarr'), 2)}x the raw Zarr ceiling.")
    def speedup(kind: str) -> float:  # warm epoch over cold epoch, W=0
        return w(kind, 0, "warm") / w(kind, 0, "cold")

    n_recs = res["store"]["recordings"]
    def row_name(k: str, ep: str) -> str:
        kind, nw = k.split("_w")
        return f"{DATASET_NAMES[kind]}, W={nw}, epoch {EPOCH_LABEL[ep]}"

    spread = max(((min(e["all_seconds"]), max(e["all_seconds"]), row_name(k, ep))
                  for k, r in d.items() for ep, e in r.items() if len(e["all_seconds"]) > 1),
                 key=lambda t: t[1] / t[0], default=None)
    spread_text = (f", within this machine's run-to-run spread (the same epoch took "
                   f"{f(spread[0], 2)}-{f(spread[1], 2)} s in repeated runs of {spread[2]})"
                   if spread else " (one run each: no run-to-run spread measured)")
    s.append(
        "The clip and graph datasets never read the signal, so against the raw readers they "
        "compare pipelines, not readers: what bounds them is building each recording's "
        "normalised feature matrix (and its correlation graphs) from the Parquet tables, "
        "once per recording and process. The second epoch reuses them (each process keeps "
        f"what it built within its byte budget, and this cohort's {n_recs} recordings fit): "
        f"measured {f(speedup('clip'), 2)}x (clip) "
        f"and {f(speedup('graph'), 2)}x (graph) the first epoch's windows/s{spread_text}. "
        f"The raw dataset reaches "
        f"{f(ratio('raw', 'zarr'), 2)}x the Zarr ceiling (which reads all channels), so "
        f"most of its time goes after the read (float64 decimation, NaN scrubbing, robust "
        f"z-scoring, padding copies).")
    if "clip_w2" in d:
        fb = [d[k]["warm"]["first_batch_s"] for k in d if k.endswith("_w2")]
        w2 = [k for k in DATASETS if f"{k}_w2" in d]
        gain = ", ".join(f"{f(w(k, 2, 'warm') / w(k, 0, 'warm'), 2)}x ({k})" for k in w2)
        fb0 = [d[k]["cold"]["first_batch_s"] for k in d if k.endswith("_w2")]
        dup = [d[f"{k}_w2"]["cold"]["recording_loads"] / d[f"{k}_w0"]["cold"]["recording_loads"]
               for k in w2 if k != "raw"]
        s.append(
            "With two workers one loader serves both epochs: its two forkserver workers "
            "(the server preloads torch, numpy and scipy) start in the first epoch, whose "
            f"first batch arrives after {f(min(fb0), 1)}"
            + (f"-{f(max(fb0), 1)}" if len(fb0) > 1 else "")
            + " s, and persist with their feature caches: the first batch of the second "
            f"epoch arrives after {f(min(fb), 2)}"
            + (f"-{f(max(fb), 2)}" if len(fb) > 1 else "")
            + f" s, and W=2 delivers {gain} the windows/s of W=0 in that epoch"
            + (f"; in the first epoch the workers build {f(min(dup), 2)}"
               + (f"-{f(max(dup), 2)}" if max(dup) - min(dup) > 0.005 else "")
               + "x the feature "
               "matrices of one process (units are dealt round-robin, so both workers touch "
               "most recordings)" if dup and max(dup) > 1.05 else "")
            + ".")
    tr = {(t["model"], t["size"]): t for t in res["train"]}
    n_def = str(res["default_threads"])
    parts = []
    for name in MODELS:
        for size in ("demo", "default"):
            t = tr.get((name, size))
            if not t:
                continue
            one = t["threads"].get("1", {}).get("median_step_s")
            dflt = t["threads"].get(n_def, {}).get("median_step_s")
            text = f"{name} {size} {f(dflt, 3)} s"
            if one is not None and n_def != "1":
                text += f" ({f(one, 3)} s with 1 thread)"
            parts.append(text)
    s.append(f"Training steps on the CPU with torch's default {n_def} threads: "
             + "; ".join(parts) + ".")
    slow = [(t["threads"][n_def]["median_step_s"] / t["threads"]["1"]["median_step_s"])
            for t in res["train"] if n_def != "1" and "1" in t["threads"]]
    if slow and min(slow) > 1.1:
        swing = max((t for t in res["train"] if n_def in t["threads"]),
                    key=lambda t: max(t["threads"][n_def]["all_step_s"])
                    / min(t["threads"][n_def]["all_step_s"]))
        times = swing["threads"][n_def]["all_step_s"]
        s.append(f"One thread is {f(min(slow), 1)}-{f(max(slow), 1)}x faster than the default "
                 f"{n_def} on this shared machine, and {n_def}-thread steps swing with the "
                 f"other jobs ({swing['model']} {swing['size']}: {f(min(times), 2)} to "
                 f"{f(max(times), 2)} s): each of the many small parallel regions of a step "
                 f"waits for a thread the other jobs have descheduled.")
    elif slow:
        s.append(f"The default {n_def} threads take {f(min(slow), 2)}-{f(max(slow), 2)}x "
                 f"the time of one thread per step.")
    seen: dict[str, dict[str, Any]] = {}
    for (m, _), t in tr.items():
        seen.setdefault(m, t)
    need = ", ".join(f"{f(t['loader_s_per_batch'], 3)} s per {m} batch"
                     for m, t in seen.items())
    bound = [f"{t['model']} {t['size']} ({n} thread{'s' if n != '1' else ''})"
             for t in res["train"] for n, c in t["threads"].items()
             if t["loader_s_per_batch"] > c["median_step_s"]]
    s.append(f"The loader (W=0, warm) needs {need}; with W=0 it runs in the training process, "
             f"so a step costs loading plus compute, and loading is the larger part for "
             + (", ".join(bound) if bound else "none of the measured models") + ".")
    s.append(f"Load average {res['loadavg_start']} at the start and {res['loadavg_end']} at "
             f"the end on {res['machine']['cores']} cores shared with other jobs: absolute "
             f"figures are pessimistic, and the ratios (runs minutes apart under similar "
             f"load) hold only to within the run-to-run spread.")
    return " ".join(s)


def section(res: dict[str, Any], tabs: dict[str, str]) -> str:
    m = res["machine"]
    v = res["versions"]
    s = res["store"]
    ch = s["model_channels_min_median_max"]
    return "\n".join([
        "## Streaming loaders and training steps (`bench/loader.py`)",
        "",
        f"Machine: {m['cpu']}; {m['cores']} cores; {m['memory']}; shared with other jobs "
        f"(load average {res['loadavg_start']} at the start, {res['loadavg_end']} at the "
        f"end). Versions: " + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"; git {m['git']}. Command: `{res['command']}` ({res['seconds']:.0f} s).",
        "",
        "Store: `generate_cohort(subjects_per_site=4, seed=3, "
        "config=PhantomConfig(chul_interictal_hours=5/60))`, hup + multicenter + chul "
        "ingested (`run_site(workers=2)`), default features (`compute_features(workers=2)`)"
        + (", quick subset: one subject per site" if res["quick"] else "")
        + f": {s['recordings']} recordings of {s['subjects']} subjects, {s['hours']:.2f} h, "
        f"{ch[0]}-{ch[2]} model channels (median {ch[1]}), stored at "
        f"{', '.join(f'{x:g}' for x in s['store_sfreq'])} Hz; sources "
        f"{' and '.join(s['source_formats'])} at "
        f"{', '.join(f'{x:g}' for x in s['source_sfreq'])} Hz. `make_loader(batch_size=8)`, "
        f"training mode (shuffle, random offsets, seed 0). Cold = the store's (or sources') "
        f"files dropped from the page cache and the in-process feature caches cleared; warm = "
        f"the next epoch (`set_epoch(1)`), nothing cleared. MB/s = bytes of all batch tensors "
        f"(datasets) or of the arrays returned (float32 from Zarr, float64 from MNE). Fastest "
        f"of {res['repeats']} run(s) per row, W=2 rows one run (all runs in the JSON).",
        "",
        tabs["datasets"],
        "",
        ("Against the baselines (same windows of the same epoch, same cache state; ratio = "
         "dataset windows/s / baseline windows/s, > 1 = the dataset is faster):"),
        "",
        tabs["ratios"],
        "",
        ("The baselines (all channels of each window's span; MNE: `read_raw(preload=False)` "
         "+ `get_data(start, stop)`):"),
        "",
        tabs["baselines"],
        "",
        (f"Training steps (CPU; forward + loss + backward + clip + AdamW as in "
         f"`TorchEstimator.fit`; median of {res['train_steps']} step(s) after {WARMUP} "
         f"warm-up steps, one thread first, then the default threads after one more warm-up "
         f"step, fewer steps once {res['step_cap_s']:g} s of a setting were timed; real "
         f"batches of the loaders, batch 8, szloc 4; 'loader s/batch' is the W=0 warm "
         f"epoch's seconds per batch, halved for szloc's batches of 4):"),
        "",
        tabs["train"],
        "",
        reading(res),
        "",
    ])


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="one subject per site, one run, W=2 for clip windows only, demo "
                         "model sizes with default threads, 1 timed step (< 2 min)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs per dataset/baseline row, fastest reported (default 2; "
                         "--quick 1)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed training steps per model and thread setting (default 3; "
                         "--quick 1)")
    ap.add_argument("--step-cap", type=float, default=15.0,
                    help="stop timing a model/thread setting once its timed steps exceed this "
                         "many seconds (at least one step; default 15)")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile a warm epoch of each dataset (W=0)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the tables and the section from the saved JSON")
    args = ap.parse_args()
    suffix = "-quick" if args.quick else ""
    if args.render:
        import json

        saved = json.loads((OUT / f"loader{suffix}.json").read_text())
        sec = section(saved, tables(saved))
        (OUT / f"loader_section{suffix}.md").write_text(sec)
        print(sec)
        return 0
    repeats = args.repeats or (1 if args.quick else 2)
    steps = args.steps or (1 if args.quick else 3)

    t_start = time.perf_counter()
    la_start = loadavg()
    info = ensure_store()

    import torch

    from sozstore.models.inputs import recording_table
    from sozstore.models.registry import REGISTRY

    recs = recording_table(STORE)
    if args.quick:
        recs = quick_subset(recs)
    default_threads = torch.get_num_threads()
    res: dict[str, Any] = {"command": command_line(), "quick": args.quick, "repeats": repeats,
                           "repeats_w2": 1,
                           "loadavg_start": la_start, "inputs": info,
                           "store": describe_store(recs), "versions": versions(),
                           "default_threads": default_threads}
    print(f"store: {res['store']}", flush=True)
    sources = source_info(recs)

    # 1-3, repeat by repeat so that each dataset and its baselines see similar load
    w2_kinds = ("clip",) if args.quick else DATASETS
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for kind in DATASETS:
            t0 = time.perf_counter()
            for reader, out in bench_baselines(kind, recs, sources).items():
                for ep, r in out.items():
                    runs.setdefault(f"base/{kind}/{reader}/{ep}", []).append(r)
            for nw in (0, 2):
                # W=2 epochs are dominated by starting the workers (a run of each is enough
                # to show it, and a second would push the full run past 10 minutes)
                if nw == 2 and (kind not in w2_kinds or rep > 0):
                    continue
                for ep, r in bench_dataset(kind, recs, nw).items():
                    runs.setdefault(f"ds/{kind}_w{nw}/{ep}", []).append(r)
            print(f"[{rep + 1}/{repeats}] {kind}: " + ", ".join(
                f"W={nw} {runs[f'ds/{kind}_w{nw}/warm'][-1]['windows_per_s']:.1f}"
                for nw in (0, 2) if len(runs.get(f"ds/{kind}_w{nw}/warm", [])) == rep + 1)
                + f" warm windows/s; Zarr {runs[f'base/{kind}/zarr/warm'][-1]['windows_per_s']:.1f}"
                f", MNE {runs[f'base/{kind}/mne_open_per_window/warm'][-1]['windows_per_s']:.1f}"
                f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    res["baselines"], res["datasets"] = {}, {}
    for key, rs in runs.items():
        what, name, *rest = key.split("/")
        if what == "base":
            kind, reader, ep = name, rest[0], rest[1]
            res["baselines"].setdefault(kind, {}).setdefault(reader, {})[ep] = fastest(rs)
        else:
            res["datasets"].setdefault(name, {})[rest[0]] = fastest(rs)

    # 4. training steps
    thread_settings = [default_threads] if args.quick else sorted({default_threads, 1})
    sizes = ("demo",) if args.quick else ("demo", "default")
    res["train"], res["train_threads"], res["train_steps"] = [], thread_settings, steps
    res["step_cap_s"] = args.step_cap
    for name, kind in MODELS.items():
        t0 = time.perf_counter()
        batches = collect_batches(kind, recs, WARMUP + (steps + 1) * len(thread_settings))
        w0 = res["datasets"][f"{kind}_w0"]["warm"]
        loader_s = w0["seconds"] / max(1, w0["batches"]) / (2 if kind == "raw" else 1)
        for size in sizes:
            cfg = REGISTRY[name].demo["model"] if size == "demo" else {}
            r = bench_train(name, size, cfg, batches, steps=steps,
                            thread_settings=thread_settings, cap_s=args.step_cap)
            r["loader_s_per_batch"] = loader_s
            res["train"].append(r)
            print(f"train {name} {size} ({r['params']:,} params): " + ", ".join(
                f"{v['median_step_s']:.3f} s/step with {n} thread(s)"
                for n, v in r["threads"].items()), flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        del batches
        gc.collect()

    if args.profile:
        res["profile"] = profile_datasets(recs)

    res["loadavg_end"] = loadavg()
    res["seconds"] = time.perf_counter() - t_start
    res["machine"] = machine()
    tabs = tables(res)
    path = write_json(f"loader{suffix}.json", res)
    sec = section(res, tabs)
    (OUT / f"loader_section{suffix}.md").write_text(sec)
    print()
    print(sec)
    print(f"results: {path}; section: {OUT / f'loader_section{suffix}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
