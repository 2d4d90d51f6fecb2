#!/usr/bin/env python
"""ETL throughput (channel-hours per second) and peak memory, beside a bare MNE read.

Inputs are long 64-channel, 1 kHz EDF+ files from ``sozstore.phantom.write_long_edf``
(generated once into ``bench/out/etl_inputs/`` and reused; ``--delete-inputs`` removes them).
For each file, two measurements, each in a fresh Python subprocess so that its peak RSS is its
own (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child, plus a psutil sampler every
0.1 s for the RSS timeline):

* ``mne``: the baseline, measured in the same run: ``mne.io.read_raw_edf(preload=False)``
  then ``raw.get_data(start, stop)`` over exactly the blocks the ETL reads (same block size
  and margins, from ``sozstore.etl.dsp.ResamplePlan.blocks``), nothing else.
* ``etl``: the public API on a one-recording manifest site:
  ``sozstore.etl.config.parse_site_config({...}, Path("site.toml"))`` then
  ``sozstore.etl.pipeline.run_site(config, store, progress=False)`` (one process, workers=1).

Throughput is channel-hours of source signal per wall-clock second of the measured call
(``read_raw_edf`` + reads, or ``run_site``; interpreter start and imports are excluded and
reported apart). The ratio is ETL throughput / bare-read throughput (1.0 = the ETL costs no
more than reading the file with MNE). Before each pair the EDF is read once, untimed, so both
see a warm page cache.

Promises checked: ETL peak RSS < 1 GiB for the 20-hour recording, and peak RSS roughly
independent of recording length (longest / shortest <= 1.25).

Usage::

    python bench/etl.py                 # 1 h and 20 h (the 20-h EDF is ~9.2 GB; ~20 min)
    python bench/etl.py --quick         # 0.05 h and 0.2 h (< 1 min)
    python bench/etl.py --delete-inputs # remove the cached EDFs and exit

Results: ``bench/out/etl[-quick].json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, command_line, machine, md_table, write_json

INPUTS = OUT / "etl_inputs"
WORK = OUT / "etl_work"
GiB = 2**30
MiB = 2**20
SFREQ = 1000.0
SEED = 0
MAINS = 50.0  # write_long_edf adds 50-Hz mains


# --------------------------------------------------------------------------- inputs
def input_path(hours: float, n_channels: int) -> Path:
    return INPUTS / f"long_{hours:g}h_{n_channels}ch_{SFREQ:g}Hz_seed{SEED}.edf"


def edf_complete(path: Path) -> bool:
    """Whether ``path`` holds as many bytes as its header says."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            header_bytes = int(head[184:192])
            n_records = int(head[236:244])
            n_signals = int(head[252:256])
            fh.seek(256 + 216 * n_signals)
            counts = fh.read(8 * n_signals)
        per_record = sum(int(counts[i * 8:(i + 1) * 8]) for i in range(n_signals)) * 2
        return path.stat().st_size == header_bytes + n_records * per_record
    except (OSError, ValueError):
        return False


def ensure_input(hours: float, n_channels: int) -> tuple[Path, float | None]:
    """The cached EDF for ``hours`` (generated if missing); and the seconds it took, if so."""
    path = input_path(hours, n_channels)
    if path.exists() and edf_complete(path):
        return path, None
    from sozstore.phantom import write_long_edf

    INPUTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.edf")
    tmp.unlink(missing_ok=True)
    print(f"generating {path.name} ({hours:g} h x {n_channels} ch) ...", flush=True)
    t0 = time.perf_counter()
    write_long_edf(tmp, hours=hours, n_channels=n_channels, sfreq=SFREQ, seed=SEED)
    seconds = time.perf_counter() - t0
    os.replace(tmp, path)
    return path, seconds


def warm_cache(path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(16 * MiB)
        while fh.readinto(buf):
            pass
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- child side
class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.perf_counter()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter() - self.t0, self.proc.memory_info().rss))
            self._stop_event.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop_event.set()
        self.join()
        self.samples.append((time.perf_counter() - self.t0, self.proc.memory_info().rss))
        return self.samples


def timeline_summary(samples: list[tuple[float, int]], t_start: float, t_end: float
                     ) -> dict[str, Any]:
    """Peak sampled RSS in each quarter of the measured call (growth shows as a rising row)."""
    span = max(t_end - t_start, 1e-9)
    quarters = []
    for q in range(4):
        lo, hi = t_start + q * span / 4, t_start + (q + 1) * span / 4
        vals = [r for t, r in samples if lo <= t <= hi]
        quarters.append(max(vals) / MiB if vals else None)
    return {"rss_quarters_MiB": quarters,
            "rss_sampled_peak_MiB": max(r for _, r in samples) / MiB}


def ru_maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_mne(edf: Path) -> dict[str, Any]:
    rss_start = ru_maxrss_bytes()
    sampler = RssSampler()
    sampler.start()
    import mne
    import numpy as np

    from sozstore.etl.dsp import ResamplePlan
    from sozstore.etl.pipeline import BLOCK_BYTES

    rss_imports = ru_maxrss_bytes()
    t_start = time.perf_counter() - sampler.t0
    c0, t0 = cpu_seconds(), time.perf_counter()
    raw = mne.io.read_raw_edf(edf, preload=False, verbose="ERROR")
    t_open = time.perf_counter() - t0
    n_ch, n = len(raw.ch_names), int(raw.n_times)
    sfreq = float(raw.info["sfreq"])
    # the blocks the ETL reads: same size, same margins (etl/pipeline.py, etl/dsp.py)
    plan = ResamplePlan(sfreq, SFREQ, MAINS)
    block_s = float(np.clip(BLOCK_BYTES / (8 * max(n_ch, 1) * sfreq), 5.0, 120.0))
    blocks = plan.blocks(n, plan.block_length(block_s))
    samples_read = 0
    for read_start, _, _, read_stop in blocks:
        data = raw.get_data(start=read_start, stop=read_stop)
        samples_read += data.shape[1]
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    t_end = time.perf_counter() - sampler.t0
    samples = sampler.stop()
    return {"kind": "mne", "seconds": seconds, "cpu_s": cpu, "open_s": t_open, "n_channels": n_ch,
            "n_samples": n, "sfreq": sfreq, "hours": n / sfreq / 3600, "n_blocks": len(blocks),
            "block_s": block_s, "samples_read": samples_read,
            "rss_at_start_MiB": rss_start / MiB, "rss_after_imports_MiB": rss_imports / MiB,
            "peak_rss_MiB": ru_maxrss_bytes() / MiB, **timeline_summary(samples, t_start, t_end)}


def child_etl(edf: Path, work: Path, profile: bool) -> dict[str, Any]:
    rss_start = ru_maxrss_bytes()
    sampler = RssSampler()
    sampler.start()
    import mne

    from sozstore.etl.config import parse_site_config
    from sozstore.etl.pipeline import run_site
    from sozstore.store import Store

    rss_imports = ru_maxrss_bytes()
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "manifest.csv"
    manifest.write_text(f"file,subject,recording\n{edf.name},bench01,long\n")
    site = {"name": "bench", "mains_hz": MAINS, "store_sfreq": SFREQ,
            "layout": {"kind": "manifest", "root": str(edf.parent),
                       "manifest": str(manifest), "recording_column": "recording"}}
    toml = work / "site.toml"  # run_site hashes the config file into the `sites` table
    toml.write_text(
        f'name = "bench"\nmains_hz = {MAINS}\nstore_sfreq = {SFREQ}\n[layout]\n'
        f'kind = "manifest"\nroot = "{edf.parent}"\nmanifest = "{manifest}"\n'
        'recording_column = "recording"\n')
    config = parse_site_config(site, toml)
    store = work / "store"
    raw = mne.io.read_raw_edf(edf, preload=False, verbose="ERROR")
    n_ch, n, sfreq = len(raw.ch_names), int(raw.n_times), float(raw.info["sfreq"])
    raw.close()
    del raw

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    t_start = time.perf_counter() - sampler.t0
    c0, t0 = cpu_seconds(), time.perf_counter()
    if prof is not None:
        prof.enable()
    report = run_site(config, store, progress=False)
    if prof is not None:
        prof.disable()
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    t_end = time.perf_counter() - sampler.t0
    samples = sampler.stop()
    out: dict[str, Any] = {
        "kind": "etl", "seconds": seconds, "cpu_s": cpu, "n_channels": n_ch, "n_samples": n,
        "sfreq": sfreq, "hours": n / sfreq / 3600, "exit_code": report.exit_code,
        "report": report.lines(), "results": [
            {"status": r.status, "seconds": r.seconds, "duration_s": r.duration_s,
             "n_channels": r.n_channels} for r in report.results],
        "rss_at_start_MiB": rss_start / MiB, "rss_after_imports_MiB": rss_imports / MiB,
        "peak_rss_MiB": ru_maxrss_bytes() / MiB, **timeline_summary(samples, t_start, t_end)}
    zarrs = list(Store.open(store).signals_dir.rglob("*.zarr"))
    out["store_bytes"] = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    if zarrs:
        import zarr

        arr = zarr.open_group(zarrs[0], mode="r")["data"]
        assert isinstance(arr, zarr.Array)
        out["store_shape"] = list(arr.shape)
        out["store_chunks"] = list(arr.chunks)
    if prof is not None:
        import io
        import pstats

        stats = pstats.Stats(prof)
        total = seconds

        def cum(func: str, file_part: str) -> float:
            # Stats.stats, the raw {(file, line, func): (cc, nc, tt, ct, callers)} table, is
            # not in typeshed; get_stats_profile() keys by bare function name and would merge
            # same-named functions of different files.
            table = stats.stats  # type: ignore[attr-defined]
            return sum(v[3] for k, v in table.items() if k[2] == func and file_part in k[0])

        parts = {
            "source read (SourceRecording.read: mne get_data + x1e6)": cum("read", "readers.py"),
            "notch (sosfiltfilt)": cum("sosfiltfilt", "_signaltools.py"),
            "rest of process_block (NaN mask, cast)":
                cum("process_block", "dsp.py") - cum("sosfiltfilt", "_signaltools.py")
                - cum("resample_poly", "_signaltools.py"),
            "resample_poly": cum("resample_poly", "_signaltools.py"),
            "zarr write (SignalWriter.append/_flush + commit)":
                cum("append", "signals.py") + cum("commit", "signals.py"),
            "source SHA-256": cum("source_sha256", "pipeline.py"),
            "site tables": cum("write_site_tables", "pipeline.py"),
        }
        parts["rest (stats, catalog, open, ...)"] = total - sum(parts.values())
        out["profile_breakdown_s"] = parts
        out["profile_total_s"] = total
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        out["profile_cumulative"] = buf.getvalue()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        out["profile_tottime"] = buf.getvalue()
    return out


# --------------------------------------------------------------------------- parent side
def run_child(kind: str, edf: Path, work: Path, profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--edf", str(edf),
           "--work", str(work)] + (["--profile"] if profile else [])
    # Linux carries the peak RSS of the process that exec()s into ru_maxrss (vfork + exec
    # from this parent would report max(parent's peak, child's)); a shell that forks the child
    # gives it a fresh record. The child also reports ru_maxrss at its start as a check.
    cmd = ["/bin/sh", "-c", '"$@" & wait $!', "sh", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall_s"] = wall
    return result


def ch_hours_per_s(r: dict[str, Any]) -> float:
    return r["n_channels"] * r["hours"] / r["seconds"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="0.05 h and 0.2 h (< 1 min)")
    ap.add_argument("--hours", type=float, nargs="+", default=None,
                    help="recording lengths (default 1 20, or 0.05 0.2 with --quick)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="measurements per file and kind")
    ap.add_argument("--profile", action="store_true",
                    help="also run the ETL of the shortest file under cProfile (extra run)")
    ap.add_argument("--delete-inputs", action="store_true",
                    help="delete the input EDFs of this run after it; alone (no --quick, no "
                         "--hours): delete every cached input and exit")
    ap.add_argument("--rss-limit-gib", type=float, default=1.0)
    ap.add_argument("--child", choices=["mne", "etl"], help=argparse.SUPPRESS)
    ap.add_argument("--edf", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        res = child_mne(args.edf) if args.child == "mne" else \
            child_etl(args.edf, args.work, args.profile)
        print(json.dumps(res, default=float))
        return 0

    if args.delete_inputs and args.hours is None and not args.quick:
        shutil.rmtree(INPUTS, ignore_errors=True)
        shutil.rmtree(WORK, ignore_errors=True)
        print(f"deleted {INPUTS}")
        return 0

    hours_list = sorted(args.hours or ([0.05, 0.2] if args.quick else [1.0, 20.0]))
    t_run = time.perf_counter()
    mach = machine()  # includes the load average at the start
    runs: list[dict[str, Any]] = []
    for hours in hours_list:
        edf, gen_s = ensure_input(hours, args.channels)
        entry: dict[str, Any] = {"hours": hours, "edf": str(edf.relative_to(OUT.parent.parent)),
                                 "edf_bytes": edf.stat().st_size, "generate_s": gen_s,
                                 "mne": [], "etl": []}
        for rep in range(args.repeat):
            entry.setdefault("warm_cache_s", []).append(warm_cache(edf))
            for kind in ("mne", "etl"):
                work = WORK / f"{hours:g}h-{kind}-{rep}"
                shutil.rmtree(work, ignore_errors=True)
                res = run_child(kind, edf, work)
                shutil.rmtree(work, ignore_errors=True)
                entry[kind].append(res)
                print(f"{hours:g} h {kind:3s} rep {rep}: {res['seconds']:.1f} s, "
                      f"{ch_hours_per_s(res):.2f} ch-h/s, peak RSS {res['peak_rss_MiB']:.0f} MiB"
                      + (f", exit {res['exit_code']}" if kind == "etl" else ""), flush=True)
                if kind == "etl" and res["exit_code"] != 0:
                    print("  ETL report: " + "; ".join(res["report"]), flush=True)
        runs.append(entry)
    profile = None
    if args.profile:
        edf = input_path(hours_list[0], args.channels)
        work = WORK / "profile"
        shutil.rmtree(work, ignore_errors=True)
        profile = run_child("etl", edf, work, profile=True)
        shutil.rmtree(work, ignore_errors=True)
        print(profile["profile_tottime"])
        print(md_table([f"ETL step (cProfile, {hours_list[0]:g} h)", "s", "share"],
                       [[k, f"{v:.2f}", f"{v / profile['profile_total_s']:.0%}"]
                        for k, v in profile["profile_breakdown_s"].items()]))
    if args.delete_inputs:  # only the files of this run
        for hours in hours_list:
            input_path(hours, args.channels).unlink(missing_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)

    # ---- summary
    def med(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    rows = []
    summary = []
    for e in runs:
        mne_s = med([r["seconds"] for r in e["mne"]])
        etl_s = med([r["seconds"] for r in e["etl"]])
        mne_cpu = med([r["cpu_s"] for r in e["mne"]])
        etl_cpu = med([r["cpu_s"] for r in e["etl"]])
        n_ch = e["etl"][0]["n_channels"]
        h = e["etl"][0]["hours"]
        s = {"hours": h, "n_channels": n_ch, "edf_GB": e["edf_bytes"] / 1e9,
             "mne_s": mne_s, "etl_s": etl_s,
             "mne_ch_h_per_s": n_ch * h / mne_s, "etl_ch_h_per_s": n_ch * h / etl_s,
             "ratio": mne_s / etl_s, "mne_cpu_s": mne_cpu, "etl_cpu_s": etl_cpu,
             "mne_ch_h_per_cpu_s": n_ch * h / mne_cpu, "etl_ch_h_per_cpu_s": n_ch * h / etl_cpu,
             "cpu_ratio": mne_cpu / etl_cpu,
             "mne_peak_rss_MiB": max(r["peak_rss_MiB"] for r in e["mne"]),
             "etl_peak_rss_MiB": max(r["peak_rss_MiB"] for r in e["etl"]),
             "etl_rss_after_imports_MiB": e["etl"][0]["rss_after_imports_MiB"],
             "mne_rss_after_imports_MiB": e["mne"][0]["rss_after_imports_MiB"],
             "etl_rss_quarters_MiB": e["etl"][0]["rss_quarters_MiB"],
             "etl_exit_code": [r["exit_code"] for r in e["etl"]],
             "store_GB": e["etl"][0].get("store_bytes", 0) / 1e9}
        summary.append(s)
        q = "/".join(f"{v:.0f}" if v is not None else "-" for v in s["etl_rss_quarters_MiB"])
        rows.append([f"{h:g} h x {n_ch} ch", f"{s['edf_GB']:.2f}",
                     f"{mne_s:.1f} s, {s['mne_ch_h_per_s']:.2f} ch-h/s",
                     f"{etl_s:.1f} s, {s['etl_ch_h_per_s']:.2f} ch-h/s",
                     f"{s['ratio']:.3f}",
                     f"{mne_cpu:.1f} / {etl_cpu:.1f} s = {s['cpu_ratio']:.3f}",
                     f"{s['mne_peak_rss_MiB']:.0f} ({s['mne_rss_after_imports_MiB']:.0f})",
                     f"{s['etl_peak_rss_MiB']:.0f} ({s['etl_rss_after_imports_MiB']:.0f})", q,
                     f"{s['store_GB']:.2f}"])
    longest, shortest = summary[-1], summary[0]
    growth = longest["etl_peak_rss_MiB"] / shortest["etl_peak_rss_MiB"]
    checks = {
        f"ETL peak RSS < {args.rss_limit_gib:g} GiB at {longest['hours']:g} h":
            longest["etl_peak_rss_MiB"] < args.rss_limit_gib * 1024,
        f"ETL peak RSS {longest['hours']:g} h / {shortest['hours']:g} h <= 1.25 "
        f"(is {growth:.2f})": growth <= 1.25,
        "every ETL run exited 0": all(c == 0 for s in summary for c in s["etl_exit_code"]),
    }
    payload = {"script": "bench/etl.py", "command": command_line(), "machine": mach,
               "loadavg_end": os.getloadavg(),
               "repeat": args.repeat, "summary": summary, "checks": checks, "runs": runs,
               "profile": profile, "total_s": time.perf_counter() - t_run}
    out = write_json("etl-quick.json" if args.quick else "etl.json", payload)
    print()
    print(f"JSON: {out.relative_to(OUT.parent.parent)}; total {payload['total_s']:.0f} s; "
          f"median of {args.repeat} run(s) per cell; load average {mach['loadavg'][0]:.1f} at "
          f"start, {os.getloadavg()[0]:.1f} at end")
    print()
    print(md_table(["recording", "EDF GB", "bare mne read", "ETL (run_site)",
                    "ETL / mne throughput", "CPU s mne / ETL = ratio",
                    "mne peak RSS MiB (after imports)",
                    "ETL peak RSS MiB (after imports)", "ETL RSS by quarter MiB",
                    "store GB"], rows))
    print()
    for name, ok in checks.items():
        print(f"- {'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
