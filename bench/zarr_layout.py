#!/usr/bin/env python
"""Signal store layout: chunk shape, sharding and codec, decided from measurements.

A synthetic 128-channel, 1 kHz, 30-minute float32 signal (1/f-like background from leaky
integrated noise, shaft-shared components that decay along the shaft, a common reference
component and sparse spikes) is written once per layout the way the ETL writes it (front to
back, appended in the ETL's block size, flushed in whole chunks, or whole shards for the
aligned sharded layouts) and read back through the store's public reader
(``sozstore.store.signals.open_signals(...).read_samples``) with four hot read patterns at
random offsets (the same offsets for every layout):

  a) 5-s slices of all channels        (feature clips)
  b) 60-s slices of all channels
  c) 60-s slices of 4 random channels  (a few contacts)
  d) 125-s windows of all channels     (model windows)

The baseline, measured in the same run, is the same slices read from a raw float32
``(channel, time)`` ``.npy`` opened with ``numpy.load(mmap_mode="r")`` and copied out: the
ceiling of any chunked, compressed layout. Ratios are ``zarr latency / memmap latency``
(1.0 = as fast as the raw memmap; larger is slower). Reads are measured warm (the files in
the page cache, as right after writing) and cold (each read preceded by
``posix_fadvise(DONTNEED)`` on the store's files, so the bytes come from the disk).

Usage::

    python bench/zarr_layout.py            # ~30-min signal, all layouts (< 5 min)
    python bench/zarr_layout.py --quick    # 3-min signal, fewer reads, warm only (< 1 min)

Results: ``bench/out/zarr_layout[-quick].json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy import signal
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.codecs.numcodecs import BitRound

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, command_line, evict, files_under, fsync_all, machine, md_table, write_json

from sozstore.etl.pipeline import BLOCK_BYTES
from sozstore.store import signals as store_signals

SFREQ = 1000.0
MB = 1e6
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")

CODECS: dict[str, Any] = {
    "blosc-zstd3-shuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "blosc-lz4-shuffle": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd3-noshuffle": lambda: ZstdCodec(level=3),
    "blosc-zstd3-bitshuffle": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
    "none": lambda: None,
    # lossy, for information: keep 12 of float32's 23 mantissa bits (relative error <= 2**-13)
    "bitround12+blosc-zstd3-shuffle":
        lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
}
FILTERS: dict[str, Any] = {
    "bitround12+blosc-zstd3-shuffle": lambda: [BitRound(keepbits=12)],
}
LOSSY_RTOL = {"bitround12+blosc-zstd3-shuffle": 2.0 ** -12}


@dataclass
class Layout:
    name: str
    chunk_ch: int | None  # None: all channels
    chunk_s: float
    codec: str = "blosc-zstd3-shuffle"
    shard_ch: int | None = None
    shard_s: float | None = None
    #: flush whole shards (True) or whole inner chunks into shards (False: read-modify-write)
    shard_aligned_writes: bool = True
    reads: bool = True
    current: bool = False
    notes: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def sharded(self) -> bool:
        return self.shard_s is not None

    def chunk_shape(self, n_ch: int) -> tuple[int, int]:
        return (min(self.chunk_ch or n_ch, n_ch), int(round(self.chunk_s * SFREQ)))

    def shard_shape(self, n_ch: int) -> tuple[int, int] | None:
        if not self.sharded:
            return None
        assert self.shard_s is not None
        return (min(self.shard_ch or n_ch, n_ch), int(round(self.shard_s * SFREQ)))

    def flush_unit(self, n_ch: int) -> int:
        """Samples the writer must hold before it can write without read-modify-write."""
        shard = self.shard_shape(n_ch)
        if shard is not None and self.shard_aligned_writes:
            return shard[1]
        return self.chunk_shape(n_ch)[1]

    def label(self) -> str:
        ch = "all" if self.chunk_ch is None else str(self.chunk_ch)
        text = f"{ch} ch x {self.chunk_s:g} s"
        if self.sharded:
            sch = "all" if self.shard_ch is None else str(self.shard_ch)
            text += f" in shards {sch} ch x {self.shard_s:g} s"
            if not self.shard_aligned_writes:
                text += " (chunk-sized writes)"
        return text


def layouts() -> list[Layout]:
    z = "blosc-zstd3-shuffle"
    return [
        Layout("16x10s", 16, 10.0, z, current=True, notes="current store choice"),
        Layout("all x10s", None, 10.0, z),
        Layout("16x60s", 16, 60.0, z),
        Layout("64x4s", 64, 4.0, z),
        Layout("64x10s", 64, 10.0, z),
        Layout("1x60s", 1, 60.0, z),
        Layout("16x10s/shard16x600s", 16, 10.0, z, shard_ch=16, shard_s=600.0),
        Layout("16x10s/shard16x600s chunk-writes", 16, 10.0, z, shard_ch=16, shard_s=600.0,
               shard_aligned_writes=False, reads=False,
               notes="what SignalWriter would do with shards= added: RMW of each shard"),
        Layout("1x60s/shard16x600s", 1, 60.0, z, shard_ch=16, shard_s=600.0),
        Layout("16x10s lz4", 16, 10.0, "blosc-lz4-shuffle"),
        Layout("16x10s zstd3-noshuffle", 16, 10.0, "zstd3-noshuffle"),
        Layout("16x10s none", 16, 10.0, "none"),
        Layout("all x10s lz4", None, 10.0, "blosc-lz4-shuffle", notes="best shape + codec"),
        Layout("64x4s lz4", 64, 4.0, "blosc-lz4-shuffle", notes="best shape + codec"),
        Layout("64x10s lz4", 64, 10.0, "blosc-lz4-shuffle", notes="best shape + codec"),
        Layout("16x10s bitround12 (lossy)", 16, 10.0, "bitround12+blosc-zstd3-shuffle",
               notes="lossy: float32 mantissa rounded to 12 bits, relative error <= 2^-13"),
    ]


# --------------------------------------------------------------------------- synthetic signal
def synth_signal(n_ch: int, n: int, seed: int = 0, block_s: float = 60.0) -> np.ndarray:
    """(n_ch, n) float32 microvolts: 1/f-like background + shaft-shared and common components.

    Background per channel: white noise through a sum of two leaky integrators (poles 0.999
    and 0.95) plus a white floor, i.e. ~1/f^2 below ~0.2 Hz, ~1/f^2 again between ~8 and
    ~80 Hz, flatter in between and above: a crude but spectrally plausible SEEG background.
    Channels come in shafts of 16 contacts; each shaft has two shared sources whose weight
    decays with the distance from a random contact (volume conduction); every channel carries
    a common-reference component; sparse spikes (~0.2/s per shaft) are added to 3-5 contacts.
    """
    rng = np.random.default_rng(seed)
    contacts = 16
    n_shafts = math.ceil(n_ch / contacts)
    # H(z) = g1/(1 - p1 z^-1) + g2/(1 - p2 z^-1) + g3, as one order-2 IIR filter
    p1, p2, g1, g2, g3 = 0.999, 0.95, 0.05, 0.35, 1.0
    b = np.polyadd(np.polyadd(g1 * np.array([1.0, -p2]), g2 * np.array([1.0, -p1])),
                   g3 * np.polymul([1.0, -p1], [1.0, -p2]))
    a = np.polymul([1.0, -p1], [1.0, -p2])
    shaft_of = np.arange(n_ch) // contacts
    pos = np.arange(n_ch) % contacts
    src_pos = rng.integers(0, contacts, size=(n_shafts, 2))
    w_shaft = np.stack([np.exp(-np.abs(pos - src_pos[shaft_of, k]) / 4.0) for k in range(2)])
    w_common = rng.uniform(0.3, 0.6, size=n_ch)
    gain = rng.uniform(8.0, 20.0, size=n_ch)  # per-channel amplitude, ~30-100 uV sd overall
    offset = rng.normal(0.0, 5.0, size=n_ch)
    out = np.empty((n_ch, n), dtype=np.float32)
    zi_ch = np.zeros((n_ch, 2))
    zi_sh = np.zeros((n_shafts * 2 + 1, 2))
    block = int(block_s * SFREQ)
    spike = np.exp(-np.arange(80) / 12.0) * np.sin(np.arange(80) / 6.0) * 150.0
    for start in range(0, n, block):
        m = min(block, n - start)
        w = rng.standard_normal((n_ch, m))
        x, zi_ch = signal.lfilter(b, a, w, axis=1, zi=zi_ch)
        shared_w = rng.standard_normal((n_shafts * 2 + 1, m))
        shared, zi_sh = signal.lfilter(b, a, shared_w, axis=1, zi=zi_sh)
        sh = shared[:-1].reshape(n_shafts, 2, m)
        x += w_shaft[0][:, None] * sh[shaft_of, 0] * 1.5
        x += w_shaft[1][:, None] * sh[shaft_of, 1] * 1.0
        x += w_common[:, None] * shared[-1][None, :]
        x *= gain[:, None]
        x += offset[:, None]
        for s in range(n_shafts):
            for t0 in rng.integers(0, max(m - 80, 1), size=rng.poisson(0.2 * m / SFREQ)):
                focus = int(rng.integers(0, contacts))
                rows = [r for r in range(s * contacts + max(0, focus - 2),
                                         s * contacts + min(contacts, focus + 3)) if r < n_ch]
                seg = slice(t0, min(t0 + 80, m))
                x[rows, seg] += spike[: seg.stop - seg.start]
        out[:, start:start + m] = x
    return out


# --------------------------------------------------------------------------- writing
def write_layout(path: Path, data: np.ndarray, lay: Layout, channels: list[str]) -> dict[str, Any]:
    """Write ``data`` the way the ETL does; return timing and the writer's peak buffer."""
    n_ch, n = data.shape
    # the ETL appends blocks of this many seconds (see etl/pipeline.py)
    append = int(round(float(np.clip(BLOCK_BYTES / (8 * n_ch * SFREQ), 5.0, 120.0)) * SFREQ))
    unit = lay.flush_unit(n_ch)
    t0 = time.perf_counter()
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.attrs.update({"channels": channels, "sfreq": SFREQ, "units": "uV"})
    arr = group.create_array(
        store_signals.DATA, shape=(n_ch, n), chunks=lay.chunk_shape(n_ch),
        shards=lay.shard_shape(n_ch), dtype="float32", compressors=CODECS[lay.codec](),
        filters=FILTERS[lay.codec]() if lay.codec in FILTERS else None,
        fill_value=np.nan, dimension_names=("channel", "time"))
    pending: list[np.ndarray] = []
    pending_n = 0
    written = 0
    peak_pending = 0
    for start in range(0, n, append):
        block = np.ascontiguousarray(data[:, start:start + append])
        pending.append(block)
        pending_n += block.shape[1]
        peak_pending = max(peak_pending, pending_n)
        last = start + append >= n
        if pending_n >= unit or last:
            buf = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
            k = buf.shape[1] if last else (buf.shape[1] // unit) * unit
            arr[:, written:written + k] = buf[:, :k]
            written += k
            rest = buf[:, k:]
            pending = [rest] if rest.shape[1] else []
            pending_n = rest.shape[1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(path, zarr_format=3)
    seconds = time.perf_counter() - t0
    assert written == n
    return {"write_s": seconds, "write_MBps": data.nbytes / MB / seconds,
            "writer_buffer_MB": peak_pending * n_ch * 4 / MB, "append_s": append / SFREQ,
            "flush_unit_s": unit / SFREQ}


# --------------------------------------------------------------------------- reading
@dataclass
class Pattern:
    key: str
    label: str
    seconds: float
    n_channels: int | None  # None: all
    count: int


def patterns(quick: bool) -> list[Pattern]:
    c = (lambda full, q: q) if quick else (lambda full, q: full)
    return [
        Pattern("a", "5 s, all ch", 5.0, None, c(45, 8)),
        Pattern("b", "60 s, all ch", 60.0, None, c(15, 3)),
        Pattern("c", "60 s, 4 random ch", 60.0, 4, c(24, 6)),
        Pattern("d", "125 s, all ch", 125.0, None, c(10, 2)),
    ]


def plan_reads(pats: list[Pattern], n_ch: int, n: int, seed: int
               ) -> dict[str, list[tuple[int, int, list[int] | None]]]:
    rng = np.random.default_rng(seed + 1)
    out: dict[str, list[tuple[int, int, list[int] | None]]] = {}
    for p in pats:
        length = int(p.seconds * SFREQ)
        reads = []
        for _ in range(p.count):
            start = int(rng.integers(0, n - length))
            chans = None if p.n_channels is None else \
                [int(i) for i in rng.choice(n_ch, size=p.n_channels, replace=False)]
            reads.append((start, start + length, chans))
        out[p.key] = reads
    return out


def amplification(lay: Layout | None, n_ch: int, n: int,
                  reads: list[tuple[int, int, list[int] | None]]) -> float:
    """Bytes decoded / bytes asked for, from the chunk geometry (inner chunks if sharded)."""
    if lay is None:
        return 1.0
    cch, ct = lay.chunk_shape(n_ch)
    asked = decoded = 0
    for start, stop, chans in reads:
        rows = range(n_ch) if chans is None else chans
        groups = {r // cch for r in rows}
        t_chunks = (stop - 1) // ct - start // ct + 1
        rows_decoded = sum(min(cch, n_ch - g * cch) for g in groups)
        asked += len(rows) * (stop - start)
        decoded += rows_decoded * t_chunks * ct
    return decoded / asked


def time_reads(read_fn, reads, cold_files: list[Path] | None
               ) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds (all threads) of each read."""
    times, cpu = [], []
    for start, stop, chans in reads:
        if cold_files is not None:
            evict(cold_files)
        c0, t0 = time.process_time(), time.perf_counter()
        out = read_fn(start, stop, chans)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert out.shape[1] == stop - start
    return times, cpu


def summarise(times: list[float], cpu: list[float], reads, n_ch: int) -> dict[str, Any]:
    nbytes = [4 * (n_ch if c is None else len(c)) * (b - a) for a, b, c in reads]
    return {"median_ms": 1e3 * statistics.median(times),
            "p10_ms": 1e3 * float(np.percentile(times, 10)),
            "p90_ms": 1e3 * float(np.percentile(times, 90)),
            "cpu_median_ms": 1e3 * statistics.median(cpu),
            "MBps": sum(nbytes) / MB / sum(times), "n": len(times)}


def memmap_reader(npy: Path, cold: bool):
    """Slices of the raw ``.npy`` through ``numpy.load(mmap_mode="r")``, copied out.

    Warm: one mapping, every page touched once beforehand, so a read is a pure copy (the
    ceiling). Cold: a fresh mapping per read (evicted pages are really gone).
    """
    def take(mm, start, stop, chans):
        if chans is None:
            return np.array(mm[:, start:stop])
        return mm[np.asarray(chans), start:stop]  # fancy index: a copy

    if not cold:
        mm = np.load(npy, mmap_mode="r")
        for row in range(mm.shape[0]):  # fault every page in once
            float(mm[row].max())
        return lambda start, stop, chans: take(mm, start, stop, chans)

    def read_cold(start, stop, chans):
        mm = np.load(npy, mmap_mode="r")
        try:
            return take(mm, start, stop, chans)
        finally:
            del mm
    return read_cold


def pread_reader(npy: Path, n_ch: int, n: int):
    """The same slices with one ``os.preadv`` per channel row into the output array."""
    with open(npy, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(fh)
        else:
            np.lib.format.read_array_header_2_0(fh)
        offset = fh.tell()

    def read(start, stop, chans):
        rows = range(n_ch) if chans is None else chans
        out = np.empty((len(rows), stop - start), dtype=np.float32)
        fd = os.open(npy, os.O_RDONLY)
        try:
            for i, r in enumerate(rows):
                os.preadv(fd, [memoryview(out[i]).cast("B")], offset + (r * n + start) * 4)
        finally:
            os.close(fd)
        return out
    return read


def zarr_reader(path: Path, channels: list[str]):
    reader = store_signals.open_signals(path)

    def read(start, stop, chans):
        return reader.read_samples(start, stop,
                                   None if chans is None else [channels[i] for i in chans])
    return read


def prefetch(files: list[Path]) -> None:
    """Read ``files`` once so that they sit in the page cache (untimed)."""
    buf = bytearray(8 * 2**20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


# --------------------------------------------------------------------------- main
def fmt_cell(r: dict[str, Any], base: dict[str, Any]) -> str:
    ratio = r["median_ms"] / base["median_ms"]
    return f"{r['median_ms']:.1f} ms, {r['MBps']:.0f} MB/s, {ratio:.1f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="3-min signal, fewer reads, no cold reads (< 1 min)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="signal length (default 30, or 3 with --quick)")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=None,
                    help="read rounds, layouts interleaved in each (default 5, 1 with --quick)")
    ap.add_argument("--only", nargs="*", default=None, help="layout names to run")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache reads")
    ap.add_argument("--workdir", type=Path, default=OUT / "zarr_layout_work")
    ap.add_argument("--keep", action="store_true", help="keep the written stores")
    args = ap.parse_args(argv)
    minutes = args.minutes or (3.0 if args.quick else 30.0)
    rounds = args.rounds or (1 if args.quick else 5)
    write_rounds = 0 if args.quick else 1
    n_ch, n = args.channels, int(minutes * 60 * SFREQ)
    t_start = time.perf_counter()
    mach = machine()  # includes the load average at the start

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    data = synth_signal(n_ch, n, seed=args.seed)
    gen_s = time.perf_counter() - t0
    channels = [f"S{i // 16:02d}{i % 16 + 1}" for i in range(n_ch)]
    raw_mb = data.nbytes / MB
    print(f"signal: {n_ch} ch x {minutes:g} min at {SFREQ:g} Hz = {raw_mb:.0f} MB float32 "
          f"(generated in {gen_s:.1f} s; sd {float(data[:, :60000].std()):.1f} uV)", flush=True)

    pats = patterns(args.quick)
    reads = plan_reads(pats, n_ch, n, args.seed)

    # ---- baseline file: raw float32 (channel, time)
    npy = work / "raw.npy"
    t0 = time.perf_counter()
    np.save(npy, data)
    npy_write_s = time.perf_counter() - t0
    fsync_all([npy])

    todo = [lay for lay in layouts() if args.only is None or lay.name in args.only]
    # warm-up, not timed: thread pools, codec objects, first-touch of the zarr machinery
    for lay in {lay.codec: lay for lay in todo}.values():
        warm = work / "warmup.zarr"
        write_layout(warm, data[:, : min(n, 130_000)], lay, channels)
        store_signals.open_signals(warm).read_samples(1000, 6000)
        shutil.rmtree(warm)

    # ---- write every layout once (kept on disk for the interleaved reads)
    files_of: dict[str, list[Path]] = {}
    for lay in todo:
        path = work / f"{lay.name.replace(' ', '_').replace('/', '_')}.zarr"
        res = write_layout(path, data, lay, channels)
        files = files_under(path)
        chunk_files = [f for f in files if f.name != "zarr.json"]
        size = sum(f.stat().st_size for f in files)
        fsync_all(files)
        cch, ct = lay.chunk_shape(n_ch)
        res.update({"label": lay.label(), "codec": lay.codec, "current": lay.current,
                    "notes": lay.notes, "files": len(files), "chunk_KB": cch * ct * 4 / 1e3,
                    "files_per_20h": int(round(len(chunk_files) * 20 * 60 / minutes)),
                    "size_MB": size / MB, "ratio": data.nbytes / size,
                    "write_MBps_samples": [res["write_MBps"]],
                    "times": {"warm": {p.key: [] for p in pats},
                              "cold": {p.key: [] for p in pats}},
                    "amplification": {p.key: amplification(lay, n_ch, n, reads[p.key])
                                      for p in pats}})
        # correctness: a slice read back must equal the input
        check = store_signals.open_signals(path).read_samples(n // 3, n // 3 + 5000)
        want = data[:, n // 3:n // 3 + 5000]
        rtol = LOSSY_RTOL.get(lay.codec)
        if rtol is None and not np.array_equal(check, want):
            raise AssertionError(f"{lay.name}: read-back differs from what was written")
        if rtol is not None:
            rel = float(np.max(np.abs(check - want) / np.maximum(np.abs(want), 1e-30)))
            if rel > rtol:
                raise AssertionError(f"{lay.name}: relative error {rel:.3g} > {rtol:.3g}")
            res["max_rel_error"] = rel
            res["max_abs_error_uV"] = float(np.max(np.abs(check - want)))
        lay.result = res
        files_of[lay.name] = files if lay.reads else []
        print(f"wrote {lay.name:34s} {res['size_MB']:7.0f} MB ratio {res['ratio']:.3f} "
              f"write {res['write_MBps']:6.0f} MB/s", flush=True)
        if not lay.reads and not args.keep:
            shutil.rmtree(path)
    # more write samples: the first minutes of the signal, layouts interleaved (rotated)
    short = data[:, : int(min(minutes, 10.0) * 60 * SFREQ)]
    for rnd in range(write_rounds):
        k = rnd % len(todo)
        for lay in todo[k:] + todo[:k]:
            tmp = work / "write-sample.zarr"
            lay.result["write_MBps_samples"].append(
                write_layout(tmp, short, lay, channels)["write_MBps"])
            shutil.rmtree(tmp)
    for lay in todo:
        # The median of two samples is their mean.
        lay.result["write_MBps"] = statistics.median(lay.result["write_MBps_samples"])
    del data, short

    # ---- reads: rounds, layouts interleaved (rotated each round), warm then cold
    base_times: dict[str, dict[str, dict[str, list[Any]]]] = {
        b: {m: {p.key: [] for p in pats} for m in ("warm", "cold")} for b in ("memmap", "pread")}
    readable = [lay for lay in todo if lay.reads]
    modes = ["warm"] + ([] if args.no_cold or args.quick else ["cold"])
    for mode in modes:
        # cold reads: one round (a fifth of the reads): I/O-bound, and eviction is slow
        for rnd in range(rounds if mode == "warm" else 1):
            targets: list[Any] = ["memmap", "pread", *readable]
            k = rnd % len(targets)
            targets = targets[k:] + targets[:k]
            for target in targets:
                if isinstance(target, str):
                    files = [npy]
                    fn = memmap_reader(npy, mode == "cold") if target == "memmap" \
                        else pread_reader(npy, n_ch, n)
                    sink = base_times[target][mode]
                else:
                    files = files_of[target.name]
                    path = files[0].parent
                    while not path.name.endswith(".zarr"):
                        path = path.parent
                    fn = zarr_reader(path, channels)
                    sink = target.result["times"][mode]
                if mode == "warm":
                    prefetch(files)
                for p in pats:
                    batch = reads[p.key][rnd::rounds]
                    if mode == "cold" and target == "memmap":
                        batch = batch[:2]  # ~0.6 s each: 8 MB read-ahead per page fault
                    fn(*batch[0])  # untimed: first-call overheads
                    wall, cpu = time_reads(fn, batch, files if mode == "cold" else None)
                    sink[p.key].extend(zip(batch, wall, cpu))
        print(f"{mode} reads done", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    total_s = time.perf_counter() - t_start

    def summ(samples: list[Any]) -> dict[str, Any]:
        batch, wall, cpu = zip(*samples)
        return summarise(list(wall), list(cpu), list(batch), n_ch)

    baseline: dict[str, Any] = {"memmap": {}, "pread": {}, "npy_write_MBps": raw_mb / npy_write_s}
    for b in ("memmap", "pread"):
        for mode in modes:
            baseline[b][mode] = {p.key: summ(base_times[b][mode][p.key]) for p in pats}
    for lay in readable:
        for mode in modes:
            lay.result[mode] = {p.key: summ(lay.result["times"][mode][p.key]) for p in pats}
        del lay.result["times"]

    # ---- report
    payload: dict[str, Any] = {
        "script": "bench/zarr_layout.py", "command": command_line(), "machine": mach,
        "signal": {"channels": n_ch, "minutes": minutes, "sfreq": SFREQ, "raw_MB": raw_mb,
                   "generate_s": gen_s},
        "patterns": [p.__dict__ for p in pats], "rounds": rounds,
        "baselines": baseline,
        "layouts": [{"name": lay.name, **lay.result} for lay in todo],
        "total_s": total_s, "loadavg_end": os.getloadavg(),
    }
    out = write_json("zarr_layout-quick.json" if args.quick else "zarr_layout.json", payload)

    print()
    print(f"Signal {n_ch} ch x {minutes:g} min x {SFREQ:g} Hz float32 ({raw_mb:.0f} MB); "
          f"{rounds} interleaved read round(s); total run {total_s:.0f} s; load average "
          f"{payload['machine']['loadavg'][0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
          f"JSON: {out.relative_to(OUT.parent.parent)}")
    print()
    rows = []
    for lay in todo:
        r = lay.result
        rows.append([lay.name + (" **(current)**" if lay.current else ""), r["label"], r["codec"],
                     f"{r['chunk_KB']:.0f}", r["files"], f"{r['files_per_20h']:,}",
                     f"{r['size_MB']:.0f}", f"{r['ratio']:.3f}", f"{r['write_MBps']:.0f}",
                     f"{r['writer_buffer_MB']:.0f}"])
    rows.append(["raw .npy (baseline)", "-", "none", "-", 1, 1, f"{raw_mb:.0f}", "1.000",
                 f"{baseline['npy_write_MBps']:.0f}", "-"])
    print("Storage and writing (writer buffer = samples the writer holds before a flush):")
    print()
    print(md_table(["layout", "chunks", "codec", "chunk KB", "files", "files/20 h", "MB",
                    "ratio", "write MB/s", "writer buffer MB"], rows))
    for mode in modes:
        base = "memmap" if mode == "warm" else "pread"
        print()
        print(f"Reads, {mode} page cache: median latency, throughput, x {base} "
              f"(median / {base} median); amp = bytes decoded / bytes asked:")
        print()
        header = ["layout"] + [f"{p.key}) {p.label}" for p in pats]
        rows = []
        for b in ("memmap", "pread"):
            rows.append([f"raw {b}" + (" (baseline)" if b == base else "")] + [
                fmt_cell(baseline[b][mode][p.key], baseline[base][mode][p.key]) for p in pats])
        for lay in readable:
            r = lay.result
            rows.append([lay.name + (" **(current)**" if lay.current else "")] + [
                fmt_cell(r[mode][p.key], baseline[base][mode][p.key])
                + f" (amp {r['amplification'][p.key]:.1f})" for p in pats])
        print(md_table(header, rows))
    print()
    print("Reads, warm: median process CPU time per read, all threads (less sensitive to other "
          "load on the machine than wall time):")
    print()
    rows = [[f"raw {b}"] + [f"{baseline[b]['warm'][p.key]['cpu_median_ms']:.1f}" for p in pats]
            for b in ("memmap", "pread")]
    rows += [[lay.name + (" **(current)**" if lay.current else "")]
             + [f"{lay.result['warm'][p.key]['cpu_median_ms']:.1f}" for p in pats]
             for lay in readable]
    print(md_table(["layout"] + [f"{p.key}) CPU ms" for p in pats], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
