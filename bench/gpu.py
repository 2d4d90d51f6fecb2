#!/usr/bin/env python
"""Issue 10 on a GPU machine: DataLoader throughput by worker count, and a full-size training
epoch of SOZFormer and DCGRU fed by the real loader against the same steps on batches held in
GPU memory, with the GPU's utilisation sampled during every phase.

Runs standalone on a built store (``--store``; made with the store recipe of
``bench/loader.py``: ``generate_cohort(subjects_per_site=4, seed=3,
config=PhantomConfig(chul_interictal_hours=5/60))``, hup + multicenter + chul ingested,
default features), on the installed ``sozstore`` package:

The subjects measured are those whose bandpower, spikes, hfo, wpt and adjacency partitions
exist (a store may be carried in part: catalog and some subjects' feature tables, no signals).

a) loader: ``TorchEstimator._dataset(CohortData.from_store(store).subset(keys), train=True)``
   of ``sozformer`` and ``dcgru`` at their full sizes (``REGISTRY[name].full`` of
   ``sozstore.models.registry``; ``ClipSequenceDataset(n_clips=12)``,
   ``GraphSequenceDataset(n_steps=12)``, augmentation on, as ``fit`` trains them; add
   ``szloc`` to ``--loader-models`` for ``RawWindowDataset(n_steps=45)`` where the store has
   its signals) through one ``make_loader(ds, batch_size, W, pin_memory=on CUDA)`` for
   each W of ``--workers``, iterated ``--loader-epochs`` epochs as ``fit`` iterates its
   loader (persistent workers: the first epoch starts them and fills their feature caches;
   the in-process caches are cleared before each W; every epoch draws new windows):
   windows/s over the whole epoch and after the first batch (steady state).
b) training: the model at its full size built as ``TorchEstimator._fit_once`` builds it
   (``build_estimator(name, REGISTRY[name].full | {"device": ...})._build``), AdamW, and
   ``TorchEstimator.train_step`` per batch, the loss summed on the device and read once per
   epoch (as ``fit`` does). First one epoch of batches is materialised on the device and
   ``--warmup`` steps run on it; then a first real-loader epoch for each W of
   ``--train-workers`` (round -1: it starts that W's one loader, kept for the run as ``fit``
   keeps its loader), then, alternating, the in-memory epoch (the same batches, already on
   the device) and a real-loader epoch for each W, for ``--rounds`` rounds. steps/s =
   batches / seconds of the epoch (the loss read at its end synchronises); ratio = best
   real-loader steps/s of rounds 0.. / best in-memory steps/s of the same model.
c) utilisation: NVML's utilisation and memory used (what ``nvidia-smi
   --query-gpu=utilization.gpu,memory.used`` prints) every 200 ms from a background thread
   (``nvidia-smi -lms 200`` in a child process where pynvml is missing); each phase gets the
   mean and 90th percentile of the samples taken while it ran.

Each phase stops early (after its current epoch or batch) once the script's time budget
(``--budget-s``) is spent, and what was skipped is recorded.

Usage::

    python bench/gpu.py --store STORE --device cuda --out DIR
    python bench/gpu.py --store STORE --device cpu --out /tmp/x --quick   # smoke test

``duckdb`` is imported (``sozstore.store.duck``, through ``sozstore.models.inputs``) but never
called on these paths; where it is not installed, a shim that records and refuses every use
is put on ``PYTHONPATH`` (inherited by the loader's workers) and the run reports how many
uses it saw (must be 0).

Results: a table on stdout and ``DIR/gpu.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MODELS = ("sozformer", "dcgru")
DATASET_OF = {"sozformer": "ClipSequenceDataset", "dcgru": "GraphSequenceDataset",
              "szloc": "RawWindowDataset"}

_SHIM = '''"""Stand-in for duckdb written by bench/gpu.py: the measured paths import duckdb but
never call it. Every use is appended to $SOZ_SHIM_LOG and refused."""
import os


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    with open(os.environ["SOZ_SHIM_LOG"], "a") as log:
        log.write(f"duckdb.{name} pid={os.getpid()}\\n")
    raise RuntimeError(f"duckdb.{name}: duckdb is not installed here (bench/gpu.py shim)")
'''


def install_duckdb_shim(*, force: bool = False) -> Path | None:
    """Put the duckdb shim on ``sys.path`` and ``PYTHONPATH`` when duckdb is missing.

    Parameters
    ----------
    force : bool
        Install it even where duckdb is installed (to test the shim on such a machine).

    Returns
    -------
    log : Path or None
        The file that records every use of the shim, or None when duckdb is installed.
    """
    if not force and importlib.util.find_spec("duckdb") is not None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="gpu-bench-shim-"))
    (folder / "duckdb.py").write_text(_SHIM)
    log = folder / "uses.log"
    log.touch()
    os.environ["SOZ_SHIM_LOG"] = str(log)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])
    sys.path.insert(0, str(folder))
    return log


# --------------------------------------------------------------------------- GPU sampler
class UtilisationSampler:
    """GPU utilisation (%) and memory used (MiB) every ``period_ms``, stamped on arrival.

    Polls NVML (``pynvml``, the library behind ``nvidia-smi``) from a thread that sleeps
    between reads, or, with ``use_smi`` or without pynvml, reads ``nvidia-smi -lms`` from a
    child process. Without either it records nothing.
    """

    def __init__(self, period_ms: int = 200, *, use_smi: bool = False) -> None:
        self.period_ms = period_ms
        self.use_smi = use_smi
        self.samples: list[tuple[float, float, float]] = []
        self.source = "none"
        self._proc: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        have_nvml = importlib.util.find_spec("pynvml") is not None
        smi = shutil.which("nvidia-smi")
        if have_nvml and not self.use_smi:
            self.source = f"pynvml (nvidia-ml-py) every {self.period_ms} ms"
            self._thread = threading.Thread(target=self._poll_nvml, daemon=True)
        elif smi:
            # line-buffered through stdbuf where it exists: a pipe would otherwise hold the
            # lines back in 4-KiB blocks and stamp them late
            stdbuf = shutil.which("stdbuf")
            self._proc = subprocess.Popen(
                [*([stdbuf, "-oL"] if stdbuf else []), smi,
                 "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", str(self.period_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
            self.source = f"nvidia-smi -lms {self.period_ms}" + (" (stdbuf -oL)" if stdbuf
                                                                 else "")
            self._thread = threading.Thread(target=self._read_smi, daemon=True)
        else:
            return
        self._thread.start()

    def _read_smi(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((time.perf_counter(), float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue

    def _poll_nvml(self) -> None:
        import pynvml  # type: ignore[import-not-found]  # nvidia-ml-py, GPU machines only

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not self._stop.is_set():
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            self.samples.append((time.perf_counter(), float(util.gpu), mem.used / 2**20))
            self._stop.wait(self.period_ms / 1000)

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        """Mean and 90th percentile of the samples stamped in ``[t0, t1]``."""
        util = [u for t, u, _ in self.samples if t0 <= t <= t1]
        mem = [m for t, _, m in self.samples if t0 <= t <= t1]
        if not util:
            return {"n": 0}
        return {"n": len(util), "util_mean": statistics.fmean(util),
                "util_p90": percentile(util, 90), "mem_max_mib": max(mem)}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (linear interpolation, as numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Budget:
    """The script's wall-clock budget: phases ask whether time is left before each epoch."""

    def __init__(self, seconds: float) -> None:
        self.t0 = time.perf_counter()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


@contextmanager
def phase(sampler: UtilisationSampler, record: dict[str, Any]) -> Iterator[None]:
    """Time a block and attach the utilisation sampled during it to ``record``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        t1 = time.perf_counter()
        record["phase_s"] = t1 - t0
        record["gpu"] = sampler.between(t0, t1)


# --------------------------------------------------------------------------- loader
def subjects_with_features(store: Path) -> tuple[list[str], list[str]]:
    """``site/subject`` keys whose partitions of every table the clip and graph datasets
    read (each table's current version in the store) exist, and the keys of the catalog
    that lack one (a store carried in part)."""
    from sozstore.models.inputs import subject_keys
    from sozstore.store import Store

    opened = Store.open(store)
    tables = ("bandpower", "spikes", "hfo", "wpt", "adjacency")
    versions = {table: opened.current_feature_version(table) for table in tables}
    have: list[str] = []
    missing: list[str] = []
    for row in subject_keys(opened).iter_rows(named=True):
        complete = all(version is not None
                       and opened.feature_path(table, version, row["site"],
                                               row["subject"]).exists()
                       for table, version in versions.items())
        (have if complete else missing).append(row["key"])
    return have, missing


def estimator_for(name: str, device: str) -> Any:
    """The estimator ``fit`` would train at full size (``REGISTRY[name].full``) on
    ``device``."""
    from sozstore.models.registry import REGISTRY, build_estimator

    return build_estimator(name, {**REGISTRY[name].full, "device": device})


def dataset_for(name: str, store: Path, keys: list[str], device: str) -> Any:
    """The training dataset ``TorchEstimator._fit_once`` builds for ``name``."""
    from sozstore.models.estimator import CohortData

    return estimator_for(name, device)._dataset(CohortData.from_store(store).subset(keys),
                                                train=True)


def loader_epoch(loader: Any, ds: Any, *, workers: int, epoch: int,
                 deadline: float) -> dict[str, Any]:
    """One epoch of a (persistent) ``make_loader``: windows, batches, seconds, first batch."""
    ds.set_epoch(epoch)
    t0 = time.perf_counter()
    first = t_first = None
    windows = batches = first_windows = 0
    complete = True
    for batch in loader:
        now = time.perf_counter()
        if first is None:
            first, t_first, first_windows = now - t0, now, len(batch["meta"])
        windows += len(batch["meta"])
        batches += 1
        if now > deadline:
            complete = False
            break
    sec = time.perf_counter() - t0
    steady = (None if t_first is None or batches < 2
              else (windows - first_windows) / (t0 + sec - t_first))
    return {"workers": workers, "epoch": epoch, "windows": windows, "batches": batches,
            "seconds": sec, "first_batch_s": first, "windows_per_s": windows / sec,
            "batches_per_s": batches / sec, "steady_windows_per_s": steady,
            "complete": complete}


def bench_loaders(store: Path, keys: list[str], args: argparse.Namespace,
                  sampler: UtilisationSampler, budget: Budget) -> list[dict[str, Any]]:
    """Phase a): per (dataset, worker count) one loader, iterated ``--loader-epochs`` epochs
    as ``fit`` iterates its loader (workers start once, in the first epoch)."""
    from sozstore.models.datasets import make_loader
    from sozstore.models.inputs import clear_input_caches
    from sozstore.models.registry import REGISTRY

    rows = []
    epoch = 0
    for name in args.loader_models:
        ds = dataset_for(name, store, keys, args.device)
        batch_size = REGISTRY[name].full.get("batch_size", estimator_for(name, "cpu")
                                             .config.batch_size)
        for workers in args.workers:
            clear_input_caches()  # every worker count starts from the Parquet tables
            loader = make_loader(ds, batch_size=batch_size, num_workers=workers,
                                 pin_memory=args.device.startswith("cuda"))
            for k in range(args.loader_epochs):
                if budget.left() < args.reserve_s:
                    rows.append({"dataset": DATASET_OF[name], "model": name,
                                 "workers": workers, "loader_epoch": k,
                                 "skipped": "time budget"})
                    continue
                rec: dict[str, Any] = {"dataset": DATASET_OF[name], "model": name,
                                       "batch_size": batch_size, "loader_epoch": k,
                                       "windows_per_epoch": len(ds)}
                with phase(sampler, rec):
                    rec.update(loader_epoch(loader, ds, workers=workers, epoch=epoch,
                                            deadline=time.perf_counter() + args.phase_cap_s))
                epoch += 1
                rows.append(rec)
                print(f"loader {name:<9} W={workers:<2} epoch {k} {rec['windows']:>4} windows "
                      f"{rec['seconds']:6.2f} s  {rec['windows_per_s']:7.1f} w/s  steady "
                      f"{fmt(rec['steady_windows_per_s'], 1):>6} w/s  first batch "
                      f"{fmt(rec['first_batch_s'], 2)} s", flush=True)
            del loader  # its workers end here
    return rows


# --------------------------------------------------------------------------- training
def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    from sozstore.models.datasets import batch_to_device

    return batch_to_device(batch, device)


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training(name: str, store: Path, keys: list[str], args: argparse.Namespace,
                   sampler: UtilisationSampler, budget: Budget) -> dict[str, Any]:
    """Phase b) for one model: in-memory epochs against real-loader epochs."""
    import torch

    from sozstore.models.datasets import make_loader
    from sozstore.models.estimator import CohortData
    from sozstore.models.inputs import N_CLIP_FEATURES

    device = torch.device(args.device)
    est = estimator_for(name, args.device)
    cfg = est.config
    torch.manual_seed(0)
    est.weights_ = (1.0, 3.0)  # focal BCE class weights: values do not change the cost
    ds = est._dataset(CohortData.from_store(store).subset(keys), train=True)
    model = est._build(getattr(ds, "n_features", N_CLIP_FEATURES)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    res: dict[str, Any] = {"model": name, "config": dict(cfg.model),
                           "params": sum(p.numel() for p in model.parameters()),
                           "batch_size": cfg.batch_size, "dataset": DATASET_OF[name],
                           "windows_per_epoch": len(ds), "epochs": []}

    # one epoch of real batches, moved to the device once (the in-memory baseline)
    ds.set_epoch(0)
    t0 = time.perf_counter()
    resident = [to_device(b, device) for b in make_loader(ds, batch_size=cfg.batch_size)]
    sync(device)
    res["materialise_s"] = time.perf_counter() - t0
    res["batches_per_epoch"] = len(resident)
    res["x_shape_max"] = list(max((tuple(b["x"].shape) for b in resident),
                                  key=lambda s: int(torch.tensor(s).prod())))
    limit = args.max_steps or len(resident)

    loss_sum = torch.zeros((), dtype=torch.float64, device=device)

    def step(batch: dict[str, Any]) -> None:
        nonlocal loss_sum
        loss = est.train_step(model, opt, batch, device)
        loss_sum += loss.detach()  # as fit: summed on the device, read once per epoch

    t0 = time.perf_counter()
    for i in range(args.warmup):
        step(resident[i % len(resident)])
    sync(device)
    res["warmup_s"] = time.perf_counter() - t0

    def in_memory(round_: int) -> dict[str, Any]:
        rec: dict[str, Any] = {"source": "in-memory", "workers": None, "round": round_}
        epoch_steps = resident[:limit]
        passes = 0
        with phase(sampler, rec):
            t0 = time.perf_counter()
            # whole passes over the epoch until --min-memory-s: one pass of a small epoch
            # is over before the utilisation sampler has read twice
            while passes == 0 or time.perf_counter() - t0 < args.min_memory_s:
                for batch in epoch_steps:
                    step(batch)
                passes += 1
                float(loss_sum)  # fit reads the epoch's loss once
            sec = time.perf_counter() - t0
        steps = passes * len(epoch_steps)
        rec.update(steps=steps, passes=passes, seconds=sec, steps_per_s=steps / sec,
                   complete=True)
        return rec

    loaders: dict[int, Any] = {}

    def real(round_: int, workers: int, epoch: int) -> dict[str, Any]:
        rec: dict[str, Any] = {"source": "loader", "workers": workers, "round": round_}
        ds.set_epoch(epoch)
        deadline = time.perf_counter() + args.phase_cap_s
        with phase(sampler, rec):
            t0 = time.perf_counter()
            if workers not in loaders:  # one loader per W for the whole run, as in fit
                rec["loader_start"] = True
                loaders[workers] = make_loader(ds, batch_size=cfg.batch_size,
                                               num_workers=workers,
                                               pin_memory=device.type == "cuda")
            steps = 0
            complete = True
            first = None
            for batch in loaders[workers]:
                if first is None:
                    first = time.perf_counter() - t0
                step(batch)
                steps += 1
                if args.max_steps and steps >= args.max_steps:
                    break
                if time.perf_counter() > deadline:
                    complete = False
                    break
            float(loss_sum)  # fit reads the epoch's loss once
            sec = time.perf_counter() - t0
        after_first = (None if first is None or steps < 2
                       else (steps - 1) / (sec - first))
        rec.update(steps=steps, seconds=sec, steps_per_s=steps / sec, first_batch_s=first,
                   steady_steps_per_s=after_first, complete=complete)
        return rec

    epoch = 1
    # round -1 starts each W's loader (its workers and their caches; fit pays that once per
    # fit); the ratios use rounds 0.. only, the first epochs are reported beside them
    for round_ in range(-1, args.rounds):
        for workers in [None, *args.train_workers]:
            if round_ < 0 and workers is None:
                continue
            if budget.left() < args.reserve_s:
                res["epochs"].append({"source": "in-memory" if workers is None else "loader",
                                      "workers": workers, "round": round_,
                                      "skipped": "time budget"})
                continue
            if workers is None:
                rec = in_memory(round_)
            else:
                rec = real(round_, workers, epoch)
                epoch += 1
            res["epochs"].append(rec)
            print(f"train  {name:<9} {rec['source']:<9} W={fmt(workers, 0):<2} round "
                  f"{round_}: {rec['steps']} steps {rec['seconds']:6.2f} s  "
                  f"{rec['steps_per_s']:7.2f} steps/s  GPU util mean "
                  f"{fmt(rec['gpu'].get('util_mean'), 0)} %", flush=True)
    best_mem = max((e["steps_per_s"] for e in res["epochs"]
                    if e.get("source") == "in-memory" and "steps_per_s" in e), default=None)
    res["ratios"] = {}
    for workers in args.train_workers:
        real_rates = [e["steps_per_s"] for e in res["epochs"]
                      if e.get("workers") == workers and "steps_per_s" in e
                      and e["round"] >= 0]
        if real_rates and best_mem:
            res["ratios"][str(workers)] = max(real_rates) / best_mem
    loaders.clear()  # their workers end here
    resident.clear()  # free the device copies before the next model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


# --------------------------------------------------------------------------- report
def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def versions(device: str) -> dict[str, Any]:
    import numpy
    import polars
    import pyarrow
    import torch
    import zarr

    import sozstore

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "numpy": numpy.__version__,
                           "polars": polars.__version__, "pyarrow": pyarrow.__version__,
                           "zarr": zarr.__version__, "sozstore_file": sozstore.__file__,
                           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device == "cuda" and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        smi = shutil.which("nvidia-smi")
        if smi:
            out["driver"] = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, check=False).stdout.strip()
    return out


def summary_table(res: dict[str, Any]) -> str:
    lines = ["| phase | W | windows or steps | s | rate | GPU util mean / p90 % | GPU MiB max |",
             "|---|---|---|---|---|---|---|"]
    for r in res["loader"]:
        if "skipped" in r:
            lines.append(f"| loader {r['dataset']} | {r['workers']} | skipped | | | | |")
            continue
        g = r["gpu"]
        lines.append(
            f"| loader {r['dataset']} (batch {r['batch_size']}), loader epoch "
            f"{r.get('loader_epoch', 0)} | {r['workers']} | "
            f"{r['windows']} windows | {r['seconds']:.2f} | {r['windows_per_s']:.1f} w/s "
            f"(steady {fmt(r['steady_windows_per_s'], 1)}; first batch "
            f"{fmt(r['first_batch_s'], 2)} s) | {fmt(g.get('util_mean'), 0)} / "
            f"{fmt(g.get('util_p90'), 0)} | {fmt(g.get('mem_max_mib'), 0)} |")
    for t in res["train"]:
        for e in t["epochs"]:
            label = f"train {t['model']} {e['source']}, round {e['round']}"
            if "skipped" in e:
                lines.append(f"| {label} | {fmt(e['workers'], 0)} | skipped | | | | |")
                continue
            g = e["gpu"]
            lines.append(
                f"| {label} | {fmt(e['workers'], 0)} | {e['steps']} steps | "
                f"{e['seconds']:.2f} | {e['steps_per_s']:.2f} steps/s"
                + (f" (after the first batch {fmt(e.get('steady_steps_per_s'), 2)}; first "
                   f"batch {fmt(e.get('first_batch_s'), 2)} s)" if e["source"] == "loader"
                   else f" ({e['passes']} passes)") + " | "
                f"{fmt(g.get('util_mean'), 0)} / {fmt(g.get('util_p90'), 0)} | "
                f"{fmt(g.get('mem_max_mib'), 0)} |")
    lines.append("")
    for t in res["train"]:
        ratios = ", ".join(f"W={w}: {r:.3f}x" for w, r in t["ratios"].items())
        lines.append(f"{t['model']} ({t['params']:,} params, {t['batches_per_epoch']} batches "
                     f"of {t['batch_size']}, largest x {t['x_shape_max']}): real loader / "
                     f"in-memory steps/s (best epoch of each) {ratios or '-'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True, help="a built store (see above)")
    ap.add_argument("--device", default="cuda", help="torch device (cuda, cpu)")
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu.json")
    ap.add_argument("--workers", default="0,2,4,8,16",
                    help="DataLoader worker counts of the loader phase (default 0,2,4,8,16)")
    ap.add_argument("--train-workers", default="0,4,8",
                    help="worker counts of the real-loader training epochs (default 0,4,8)")
    ap.add_argument("--loader-models", default="sozformer,dcgru",
                    help="whose training datasets the loader phase runs")
    ap.add_argument("--train-models", default=",".join(MODELS),
                    help="models of the training phase (default sozformer,dcgru; '' skips it)")
    ap.add_argument("--loader-epochs", type=int, default=3,
                    help="epochs per loader in the loader phase (default 3; the first starts "
                         "the workers)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="in-memory / real-loader epoch rounds per model (default 2)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up steps (default 5)")
    ap.add_argument("--min-memory-s", type=float, default=2.0,
                    help="in-memory epochs repeat their batches until this long (default 2)")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="steps per training epoch at most (0: the whole epoch)")
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="wall-clock budget of the whole script (default 330)")
    ap.add_argument("--phase-cap-s", type=float, default=40.0,
                    help="one epoch stops after this many seconds (default 40)")
    ap.add_argument("--reserve-s", type=float, default=15.0,
                    help="no new epoch starts with less budget left (default 15)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: W 0,2; 3 steps an epoch; one round")
    ap.add_argument("--shim-duckdb", action="store_true",
                    help="use the duckdb shim even where duckdb is installed")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. the "
                                               "commit the installed package was built from)")
    args = ap.parse_args(argv)
    if args.quick:  # smaller defaults; worker counts given on the command line stay
        if args.workers == ap.get_default("workers"):
            args.workers = "0,2"
        if args.train_workers == ap.get_default("train_workers"):
            args.train_workers = "0,2"
        args.rounds, args.max_steps, args.warmup = 1, args.max_steps or 3, 1
        args.loader_epochs = 2
        args.min_memory_s = 0.0
    args.workers = [int(w) for w in str(args.workers).split(",")]
    args.train_workers = [int(w) for w in str(args.train_workers).split(",")]
    args.loader_models = [m for m in args.loader_models.split(",") if m]
    args.train_models = [m for m in args.train_models.split(",") if m]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    from sozstore.store import Store

    if not Store.open(args.store).catalog_dir.is_dir():
        print(f"error: {args.store}: not a store (it has no catalog/ folder)", file=sys.stderr)
        return 2
    shim_log = install_duckdb_shim(force=args.shim_duckdb)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    keys, missing = subjects_with_features(args.store)
    if not keys:
        print(f"error: {args.store}: no subject has its feature tables", file=sys.stderr)
        return 2
    res: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "note": args.note,
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                           "versions": versions(args.device), "subjects": keys,
                           "subjects_without_features": missing,
                           "args": {k: str(v) for k, v in vars(args).items()},
                           "duckdb_shim": shim_log is not None}
    print(json.dumps(res["versions"]), flush=True)
    sampler = UtilisationSampler()
    sampler.start()
    res["sampler"] = sampler.source
    try:
        t0 = time.perf_counter()
        idle: dict[str, Any] = {}
        with phase(sampler, idle):
            time.sleep(1.0)  # the idle GPU, for reference
        if not sampler.samples and sampler.source.startswith("pynvml"):
            # NVML gave nothing in a second: read nvidia-smi instead
            sampler.stop()
            sampler = UtilisationSampler(use_smi=True)
            sampler.start()
            res["sampler"] = sampler.source
            idle = {}
            with phase(sampler, idle):
                time.sleep(1.0)
        res["idle"] = idle
        res["loader"] = bench_loaders(args.store, keys, args, sampler, budget)
        res["train"] = []
        for name in args.train_models:
            if budget.left() < args.reserve_s:
                res.setdefault("skipped", []).append(f"train {name}: time budget")
                continue
            res["train"].append(bench_training(name, args.store, keys, args, sampler, budget))
        res["seconds"] = time.perf_counter() - t0
    finally:
        sampler.stop()
        if shim_log is not None:
            uses = shim_log.read_text().splitlines()
            res["duckdb_shim_uses"] = uses
        res["gpu_samples"] = len(sampler.samples)
        (args.out / "gpu.json").write_text(json.dumps(res, indent=2, default=str))
    print()
    print(summary_table(res))
    if shim_log is not None:
        print(f"duckdb shim uses: {len(res['duckdb_shim_uses'])}")
    print(f"idle GPU: {res['idle']['gpu']}; samples: {res['gpu_samples']} ({sampler.source}); "
          f"{res['seconds']:.0f} s; JSON: {args.out / 'gpu.json'}")
    return 1 if shim_log is not None and res["duckdb_shim_uses"] else 0


if __name__ == "__main__":
    sys.exit(main())
