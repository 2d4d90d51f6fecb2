"""Streaming torch datasets over the store, sharded across DataLoader workers and DDP ranks.

Every dataset walks *work units* (a window of one recording). The list of units of an epoch
is a pure function of the catalog, the seed and the epoch, so every worker of every rank
computes the same list, shuffles it with the same generator and takes its own slice
``units[global_id::global_n]`` with ``global_id = rank * num_workers + worker_id``: no unit is
seen twice and none is missed (``equalize=False``). DDP needs the same number of steps on
every rank: ``equalize=True`` pads the shorter slices by repeating their first units (at
most ``global_n - 1`` repeats per epoch, stated in :func:`shard_units`).

Window positions are drawn at random inside each recording (``random_offsets=True`` for
training); the absolute time of a window is never part of a sample's tensors (in the HUP
layout every onset sits at 120 s: a model that saw time would learn the label from it), it is
only in the sample's ``meta`` for evaluation bookkeeping. Memory is bounded by the feature
matrices each process caches (a byte budget per process, ``models.inputs.INPUT_CACHE_BYTES``),
never whole signals.

Loader workers (:func:`make_loader`) persist across epochs: they are started once per loader
by a forkserver that has already imported torch, numpy and scipy, keep their feature caches
for the whole fit, and read the epoch that :meth:`~_WindowDataset.set_epoch` sets from a
shared-memory counter (a worker's copy of the dataset is pickled once, at its start).
"""

from __future__ import annotations

import abc
import math
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import signal
from torch.utils.data import IterableDataset, get_worker_info

from sozstore.models.inputs import (
    BANDS,
    N_CLIP_FEATURES,
    RecordingInfo,
    clip_adjacency,
    clip_features,
)
from sozstore.store import Store, StoreLike
from sozstore.store._docs import fill_doc
from sozstore.store.signals import SignalReader, open_signals


@dataclass(frozen=True)
class Unit:
    """One window: recording index and first clip (or first second, for raw windows)."""

    recording: int
    start: int


def epoch_units(recordings: Sequence[RecordingInfo], *, window: int, epoch: int, seed: int,
                random_offsets: bool, shuffle: bool) -> list[Unit]:
    """All windows of an epoch, identical on every worker and rank.

    Each recording contributes ``max(1, n_clips // window)`` windows. With random offsets
    they start at random positions (an epoch-dependent draw); otherwise they tile the
    recording from its start.
    """
    rng = np.random.default_rng([seed, epoch])
    units: list[Unit] = []
    for i, rec in enumerate(recordings):
        n = max(1, rec.n_clips // window)
        last = max(0, rec.n_clips - window)
        if random_offsets:
            starts = np.sort(rng.integers(0, last + 1, size=n))
        else:
            starts = np.minimum(np.arange(n) * window, last)
        units.extend(Unit(i, int(s)) for s in starts)
    if shuffle:
        order = rng.permutation(len(units))
        units = [units[k] for k in order]
    return units


def shard_units(units: Sequence[Unit], *, global_id: int, global_n: int,
                equalize: bool) -> list[Unit]:
    """The slice of ``units`` for one worker of one rank.

    With ``equalize`` every slice has ``ceil(len(units) / global_n)`` units: the short ones
    repeat their own first units (DDP collectives need equal step counts).
    """
    mine = list(units[global_id::global_n])
    if equalize and units:
        target = math.ceil(len(units) / global_n)
        pool = mine or list(units[:1])
        while len(mine) < target:
            mine.append(pool[(len(mine)) % len(pool)])
    return mine


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@fill_doc
class _WindowDataset(IterableDataset):
    """Shared sharding, shuffling and epoch logic (see the module docstring).

    Parameters
    ----------
    %(store)s
        Opened once here; every sample reads through it (it pickles to workers).
    recordings : sequence of RecordingInfo
        The recordings to walk (:func:`~sozstore.models.inputs.recording_table`).
    %(seed)s
        With the epoch, it draws the window positions, their order and the augmentation.
    """

    window: int = 1

    def __init__(self, store: StoreLike, recordings: Sequence[RecordingInfo], *,
                 seed: int = 0, shuffle: bool = True, random_offsets: bool = True,
                 equalize: bool = False, rank: int | None = None,
                 world_size: int | None = None, augment: bool = False) -> None:
        super().__init__()
        self.store = Store.open(store)
        self.recordings = list(recordings)
        self.seed = seed
        self.shuffle = shuffle
        self.random_offsets = random_offsets
        self.equalize = equalize
        self.augment = augment
        # shared memory: persistent loader workers hold a copy of the dataset pickled when
        # they started, and read the epoch of each new iteration from here
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._rank = rank
        self._world_size = world_size

    @property
    def epoch(self) -> int:
        """The epoch whose windows and order ``__iter__`` draws (shared with the workers)."""
        return int(self._epoch.item())

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def set_epoch(self, epoch: int) -> None:
        """Draw new window positions and a new order (call before each epoch; the loader's
        persistent workers see it at their next iteration)."""
        self.epoch = epoch

    def units(self) -> list[Unit]:
        return epoch_units(self.recordings, window=self.window, epoch=self.epoch,
                           seed=self.seed, random_offsets=self.random_offsets,
                           shuffle=self.shuffle)

    def my_units(self) -> list[Unit]:
        """This worker's slice of the epoch's units."""
        rank, world = _distributed()
        rank = self._rank if self._rank is not None else rank
        world = self._world_size if self._world_size is not None else world
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return shard_units(self.units(), global_id=rank * n_workers + worker,
                           global_n=world * n_workers, equalize=self.equalize)

    #: Samples held to mix windows of neighbouring recordings when shuffling.
    shuffle_buffer: int = 32

    def __iter__(self) -> Iterator[dict[str, Any]]:
        units = self.my_units()
        if not self.shuffle:
            for unit in units:
                yield self.sample(unit)
            return
        # Visit this worker's units recording by recording (each recording's features are
        # read once per epoch), recordings in a random order, windows in a random order,
        # through a small shuffle buffer (WebDataset-style shard shuffling).
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        order = {r: k for k, r in enumerate(rng.permutation(len(self.recordings)))}
        units = sorted(units, key=lambda u: (order[u.recording], rng.random()))
        buffer: list[dict[str, Any]] = []
        for unit in units:
            buffer.append(self.sample(unit))
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def __len__(self) -> int:  # windows per epoch over all shards (for progress bars)
        return len(self.units())

    @abc.abstractmethod
    def sample(self, unit: Unit) -> dict[str, Any]:
        """The sample of one window (each dataset below)."""

    def _common(self, rec: RecordingInfo, unit: Unit) -> dict[str, Any]:
        return {"y": torch.tensor(rec.labels, dtype=torch.float32),
                "meta": {"recording_id": rec.recording_id, "site": rec.site,
                         "subject": rec.subject, "channels": list(rec.channels),
                         "start": unit.start}}

    def _rng(self, unit: Unit) -> np.random.Generator:
        """The augmentation draw of one window in one epoch (same on every worker)."""
        return np.random.default_rng([self.seed, self.epoch, unit.recording, unit.start, 11])


class _ClipFeatureDataset(_WindowDataset):
    """Windows of ``window`` consecutive clips of the per-clip feature matrix."""

    def __init__(self, store: StoreLike, recordings: Sequence[RecordingInfo], *,
                 window: int, clip_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(store, recordings, **kwargs)
        self.window = window
        self.clip_s = clip_s

    @property
    def n_features(self) -> int:
        return N_CLIP_FEATURES


class ClipSequenceDataset(_ClipFeatureDataset):
    """Windows of ``n_clips`` consecutive 5-s clips of per-clip features (SOZFormer).

    A sample holds ``x`` (n_chans, n_clips, n_features) float32, ``y`` (n_chans) SOZ labels
    (NaN = unknown), ``valid`` (n_chans, n_clips) and ``meta``.
    """

    def __init__(self, store: StoreLike, recordings: Sequence[RecordingInfo], *,
                 n_clips: int = 25, clip_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(store, recordings, window=n_clips, clip_s=clip_s, **kwargs)

    def sample(self, unit: Unit) -> dict[str, Any]:
        rec = self.recordings[unit.recording]
        feats, valid = clip_features(self.store, rec, clip_s=self.clip_s)
        x = _window(feats, unit.start, self.window, axis=1)
        v = _window(valid, unit.start, self.window, axis=1)
        common = self._common(rec, unit)
        if self.augment:
            rng = self._rng(unit)
            keep = channel_subset(rng, x.shape[0])
            x = augment_clip_features(rng, x[keep], channel_axis=0)
            v = v[keep]
            _subset_common(common, keep)
        return {"x": torch.from_numpy(np.ascontiguousarray(x)),
                "valid": torch.from_numpy(np.ascontiguousarray(v)), **common}


class GraphSequenceDataset(_ClipFeatureDataset):
    """Windows of ``n_steps`` clips with per-step correlation graphs (DCGRU).

    A sample holds ``x`` (n_steps, n_chans, n_features), ``adj`` (n_steps, n_chans, n_chans)
    Pearson r, ``y`` (n_chans) and ``meta``.
    """

    def __init__(self, store: StoreLike, recordings: Sequence[RecordingInfo], *,
                 n_steps: int = 12, clip_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(store, recordings, window=n_steps, clip_s=clip_s, **kwargs)

    def sample(self, unit: Unit) -> dict[str, Any]:
        rec = self.recordings[unit.recording]
        feats, _ = clip_features(self.store, rec, clip_s=self.clip_s)
        adj = clip_adjacency(self.store, rec, clip_s=self.clip_s)
        x = _window(feats, unit.start, self.window, axis=1).transpose(1, 0, 2)
        a = _window(adj, unit.start, self.window, axis=0)
        common = self._common(rec, unit)
        if self.augment:
            rng = self._rng(unit)
            keep = channel_subset(rng, x.shape[1])
            x = augment_clip_features(rng, x[:, keep], channel_axis=1)
            a = a[:, keep][:, :, keep]
            _subset_common(common, keep)
        return {"x": torch.from_numpy(np.ascontiguousarray(x)),
                "adj": torch.from_numpy(np.ascontiguousarray(a)), **common}


class RawWindowDataset(_WindowDataset):
    """Seizure-centred windows of raw signal cut in one-second steps (SZLoc).

    Only recordings with a seizure onset take part. A window of ``n_steps`` seconds starts
    ``15 + jitter`` seconds before the onset (``jitter`` drawn from 1..14 s when
    ``random_offsets``, else 7 s), so the onset lands at step 16-29 and the loss can exclude
    the uncertain middle (models.md §1.3). Samples are decimated to ``sfreq_out`` and robustly
    z-scored per channel. A sample holds ``x`` (n_chans, n_steps, sfreq_out),
    ``seizure`` (n_steps) 0/1 (1 from the marked onset on; offsets are often missing),
    ``y`` (n_chans) and ``meta``.
    """

    def __init__(self, store: StoreLike, recordings: Sequence[RecordingInfo], *,
                 n_steps: int = 45, sfreq_out: float = 200.0, **kwargs: Any) -> None:
        super().__init__(store, [r for r in recordings if r.onsets_s], **kwargs)
        self.window = n_steps
        self.sfreq_out = sfreq_out
        self._readers: dict[str, SignalReader] = {}

    def __getstate__(self) -> dict[str, Any]:
        # open readers stay in the process that opened them; a worker opens its own
        state = self.__dict__.copy()
        state["_readers"] = {}
        return state

    def _reader(self, rec: RecordingInfo) -> SignalReader:
        """One open reader per recording and process (opening a Zarr group reads its
        metadata: once per recording, not once per window)."""
        reader = self._readers.get(rec.zarr_path)
        if reader is None:
            reader = open_signals(self.store.signal_path(rec.zarr_path))
            self._readers[rec.zarr_path] = reader
        return reader

    def units(self) -> list[Unit]:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        units = [Unit(i, k) for i, rec in enumerate(self.recordings)
                 for k in range(len(rec.onsets_s))]
        if self.shuffle:
            units = [units[j] for j in rng.permutation(len(units))]
        return units

    def sample(self, unit: Unit) -> dict[str, Any]:
        rec = self.recordings[unit.recording]
        onset = rec.onsets_s[unit.start]
        if self.random_offsets:
            rng = np.random.default_rng([self.seed, self.epoch, unit.recording, unit.start])
            jitter = int(rng.integers(1, 15))
        else:
            jitter = 7
        sig = self._reader(rec)
        start = onset - 15.0 - jitter
        start = float(np.clip(start, 0.0, max(0.0, sig.duration - self.window)))
        data = sig.read(start, start + self.window, list(rec.channels)).astype(np.float64)
        factor = int(round(sig.sfreq / self.sfreq_out))
        if factor > 1:
            data = signal.decimate(np.nan_to_num(data), factor, axis=-1, zero_phase=True)
        steps = int(self.sfreq_out)
        n_steps = self.window
        need = n_steps * steps
        if data.shape[1] < need:
            data = np.pad(data, ((0, 0), (0, need - data.shape[1])))
        data = _robust_z(data[:, :need]).reshape(len(rec.channels), n_steps, steps)
        t = start + np.arange(n_steps) + 0.5
        seizure = (t >= onset).astype(np.float32)
        out = {"x": torch.from_numpy(data.astype(np.float32)),
               "seizure": torch.from_numpy(seizure), **self._common(rec, unit)}
        out["meta"]["onset_step"] = int(np.floor(onset - start))
        return out


#: Leading per-clip features that scale with a channel's gain (log band powers, log line
#: length, log variance: see ``models.inputs.clip_features``); a gain g adds log(g) to line
#: length and 2 log(g) to the power features.
_GAIN_FEATURES = len(BANDS) + 2


def channel_subset(rng: np.random.Generator, n_channels: int, *, keep_min: float = 0.6
                   ) -> NDArray[np.int64]:
    """A random subset of at least ``keep_min`` of the channels, in their order.

    Training on random subsets (channel dropout at the level of the implant) keeps a model
    from relying on any one contact being present: implants differ between patients, and a
    spatial model that sees the same full set every time learns the set.
    """
    if n_channels <= 2:
        return np.arange(n_channels)
    k = int(rng.integers(max(2, math.ceil(keep_min * n_channels)), n_channels + 1))
    return np.sort(rng.choice(n_channels, size=k, replace=False))


def augment_clip_features(rng: np.random.Generator, x: NDArray[np.float32], *,
                          channel_axis: int, gain_sd: float = 0.3, noise_sd: float = 0.05
                          ) -> NDArray[np.float32]:
    """Per-channel amplitude scaling and small feature noise on normalised clip features.

    A random gain per channel (log-normal, ``gain_sd`` in natural-log units) shifts the
    gain-dependent features of that channel as the same contact recorded through another
    amplifier or reference would (in the units of the per-recording normalisation, which
    divides by the IQR: the shift is applied before the clip, so a gain of e^0.3 moves a
    typical log-power feature by about half its spread); Gaussian noise of ``noise_sd``
    on every feature blurs exact values a model could memorise. Time shifts come from the
    random window offsets (``random_offsets``).

    Parameters
    ----------
    rng : numpy.random.Generator
    x : array, float32
        Clip features with the channel axis at ``channel_axis`` and features last.
    channel_axis : int
        0 for ``(chans, clips, features)``, 1 for ``(steps, chans, features)``.
    """
    n_ch = x.shape[channel_axis]
    log_gain = np.asarray(rng.normal(0.0, gain_sd, n_ch), dtype=np.float32)
    shape = [1] * x.ndim
    shape[channel_axis] = n_ch
    out = x.copy()
    weight = np.ones(_GAIN_FEATURES, dtype=np.float32) * 2.0
    weight[len(BANDS)] = 1.0  # line length scales with the gain, not its square
    out[..., :_GAIN_FEATURES] += log_gain.reshape(shape) * weight
    out += rng.normal(0.0, noise_sd, out.shape).astype(np.float32)
    return out


def _subset_common(common: dict[str, Any], keep: NDArray[np.int64]) -> None:
    """Restrict a sample's labels and channel names to the channels ``keep``."""
    common["y"] = common["y"][torch.from_numpy(keep)]
    common["meta"]["channels"] = [common["meta"]["channels"][k] for k in keep]


def _robust_z(x: NDArray[np.float64]) -> NDArray[np.float64]:
    med = np.median(x, axis=-1, keepdims=True)
    mad = np.median(np.abs(x - med), axis=-1, keepdims=True) * 1.4826
    return np.clip((x - med) / np.where(mad > 1e-9, mad, 1.0), -20.0, 20.0)


def _window(a: NDArray, start: int, length: int, *, axis: int) -> NDArray:
    """``length`` entries of ``a`` along ``axis`` from ``start``, zero-padded at the end."""
    taken = np.take(a, np.arange(start, min(start + length, a.shape[axis])), axis=axis)
    short = length - taken.shape[axis]
    if short > 0:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, short)
        taken = np.pad(taken, pad)
    return taken


def collate_padded(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples, padding the channel axis; adds ``mask`` (batch, n_chans) True = real.

    The channel axis is axis 0 of ``x``/``y``/``valid`` for clip and raw samples, axis 1 of
    ``x`` and axes 1-2 of ``adj`` for graph samples. Each batch array is allocated once and
    every sample copied into its slice (no padded per-sample copy stacked a second time), in
    numpy: single-threaded copies, where torch's intra-op threads made a loading process on
    a busy 2-core machine 5-20x slower (bench/RESULTS.md, CPU loader section).
    """
    n_max = max(len(b["y"]) for b in batch)
    out: dict[str, Any] = {"meta": [b["meta"] for b in batch]}
    mask = torch.zeros(len(batch), n_max, dtype=torch.bool)
    for i, b in enumerate(batch):
        mask[i, : len(b["y"])] = True
    out["mask"] = mask
    graph = "adj" in batch[0]
    for key in batch[0]:
        if key == "meta":
            continue
        tensors = [b[key] for b in batch]
        if key == "seizure":
            out[key] = torch.stack(tensors)
            continue
        # the channel axes of each tensor kind (graph x is (steps, chans, features))
        axes = (1, 2) if key == "adj" else (1,) if (graph and key == "x") else (0,)
        arrays = [t.numpy() for t in tensors]
        shape = [len(arrays), *arrays[0].shape]
        for ax in axes:
            shape[ax + 1] = n_max
        fill = float("nan") if key == "y" else 0
        full = np.full(shape, fill, dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            region: tuple[int | slice, ...] = (i, *(slice(0, n) for n in a.shape))
            full[region] = a
        out[key] = torch.from_numpy(full)
    return out


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch's tensors on ``device``; copies from pinned memory (``make_loader(...,
    pin_memory=True)``) are asynchronous (``non_blocking``), and tensors already there are
    returned as they are."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _worker_init(_: int) -> None:
    # one thread per worker: the workers are the parallelism (braindecode#75)
    torch.set_num_threads(1)


#: Modules the forkserver imports once, so that every worker forked from it starts with them
#: (on this project's 2-core CI box, importing torch, numpy and scipy.signal takes 3-6 s of a
#: worker's start). Not polars, pyarrow or duckdb, nor sozstore's modules that import them:
#: importing polars starts jemalloc background threads and a cleaner thread, pyarrow another
#: jemalloc thread, and a process forked from a parent with such threads can deadlock in them
#: (the reason the workers are forkserver children in the first place).
FORKSERVER_PRELOAD = ("torch", "numpy", "scipy.signal")


def warm_forkserver() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` context, its server started and told to preload
    :data:`FORKSERVER_PRELOAD` (a no-op once it runs; the imports proceed in the server while
    this process goes on, so a loader made early has its workers ready sooner)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return context


def make_loader(dataset: _WindowDataset, *, batch_size: int, num_workers: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader for these datasets: padded batches collated in the workers, and with
    ``num_workers > 0`` worker processes that persist across epochs (iterate the same loader
    every epoch and call ``dataset.set_epoch`` before each), forked from a ``forkserver``
    that preloads torch, numpy and scipy (forking a parent whose DuckDB/polars thread pools are
    running can deadlock the child).

    Parameters
    ----------
    dataset : _WindowDataset
        One of the datasets of this module.
    batch_size : int
        Windows per batch (each worker batches its own shard).
    num_workers : int
        Worker processes (0: load in this process).
    pin_memory : bool
        Copy batches into page-locked memory (for asynchronous copies to a CUDA device with
        :func:`batch_to_device`).
    """
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = {"multiprocessing_context": warm_forkserver(), "worker_init_fn": _worker_init,
                  "persistent_workers": True}
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size,
                                       collate_fn=collate_padded, num_workers=num_workers,
                                       pin_memory=pin_memory, **kwargs)
