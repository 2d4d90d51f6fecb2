"""Concurrent writers and readers (issue 11, docs/commit-protocol.md): two runs of one site
or of two sites, at once or staggered, leave the store a sequential run leaves; readers
never see an uncommitted recording; a run's temporaries survive another run's cleanup;
workers die with the run that started them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from synth import manifest_site, seeg_like, write_edf

from sozstore.etl.config import load_site_config
from sozstore.etl.features.engine import compute_features
from sozstore.etl.pipeline import run_site
from sozstore.store import Store
from sozstore.store.atomic import TMP_MARK, clean_temporaries
from sozstore.store.duck import run_query
from sozstore.store.layout import CATALOG_TABLES
from sozstore.store.locks import _open_locked, lease_path, site_lock_name, writer_locks
from sozstore.store.signals import open_signals

NAMES = ["A'1", "A'2", "A'3", "A'4", "B1", "B2", "B3", "B4"]


def _site(root: Path, name: str, n: int, seconds: float, seed: int) -> Path:
    rows = []
    for i in range(n):
        data = seeg_like(len(NAMES), seconds, 512.0, seed + i)
        write_edf(root / f"rec{i}.edf", data, 512.0, NAMES,
                  annotations=((5.0, 0.0, "Début crise"), (12.0, 0.0, "Fin crise")))
        rows.append({"file": f"rec{i}.edf", "patient": f"P{i % 2}", "recording": f"r{i}",
                     "soz": "A'1"})
    return manifest_site(root, rows, name=name)


def _etl_cmd(toml: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sozstore.cli", "etl", "--site", str(toml), "--store",
            str(store), "--no-progress", *extra]


def _sequential(tomls: list[Path], store: Path) -> Path:
    """What one run after the other leaves: ETL then features of each site in turn."""
    for toml in tomls:
        config = load_site_config(toml)
        assert run_site(config, store, progress=False).exit_code == 0
        assert compute_features(store, site=config.name, progress=False).exit_code == 0
    return store


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two small sites and the stores that sequential runs leave (one site, both)."""
    out = tmp_path_factory.mktemp("concurrency")
    alpha = _site(out / "raw_alpha", "alpha", 3, 20.0, 0)
    beta = _site(out / "raw_beta", "beta", 3, 20.0, 10)
    return {"alpha": alpha, "beta": beta,
            "ref_alpha": _sequential([alpha], out / "ref_alpha"),
            "ref_both": _sequential([alpha, beta], out / "ref_both")}


def _content(store: Path) -> dict[str, object]:
    """Catalog and feature tables (sorted frames) and every signal's samples and attributes."""
    s = Store.open(store)
    out: dict[str, object] = {}
    for table in CATALOG_TABLES:
        frame = s.read(table)
        out[table] = frame.sort(frame.columns)
    for table in s.feature_tables():
        frame = s.read(table)
        # list columns (spectra) cannot key a sort; the other columns identify a row
        out[f"features/{table}"] = frame.sort([c for c in frame.columns
                                                if not isinstance(frame[c].dtype, pl.List)])
    for zarr in sorted(s.signals_dir.glob("*/*.zarr")):
        sig = open_signals(zarr)
        out[zarr.name] = (sig.attrs, sig.read_samples(0, sig.n_samples).tobytes())
    return out


def _assert_same_store(got: Path, want: Path) -> None:
    a, b = _content(got), _content(want)
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], pl.DataFrame):
            assert_frame_equal(a[key], b[key], check_row_order=True)  # type: ignore[arg-type]
        else:
            assert a[key] == b[key], key
    assert not list(got.rglob(f"*{TMP_MARK}*"))


def _run_together(cmds: list[list[str]], delays: list[float]) -> list[subprocess.CompletedProcess]:
    procs = []
    for cmd, delay in zip(cmds, delays):
        time.sleep(delay)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    done = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return done


@pytest.mark.slow
@pytest.mark.parametrize(("first", "second", "delay_s"), [
    ("alpha", "alpha", 0.0), ("alpha", "alpha", 1.0), ("alpha", "beta", 0.0),
    ("alpha", "beta", 1.0)],
    ids=["same-site-at-once", "same-site-staggered", "two-sites-at-once",
         "two-sites-staggered"])
def test_two_runs_equal_a_sequential_run(sites: dict, tmp_path: Path, first: str, second: str,
                                         delay_s: float) -> None:
    store = tmp_path / "store"
    runs = _run_together([_etl_cmd(sites[first], store), _etl_cmd(sites[second], store)],
                         [0.0, delay_s])
    for run in runs:
        assert run.returncode == 0, run.stderr + run.stdout
        assert "Traceback" not in run.stderr and "FileNotFoundError" not in run.stderr
    _assert_same_store(store, sites["ref_alpha" if first == second else "ref_both"])


@pytest.mark.slow
def test_readers_during_etl_see_only_committed_recordings(sites: dict, tmp_path: Path) -> None:
    """Queries, the store's readers and a training run's recording list, in a loop while the
    ETL and features of a site run: none fails, none sees a recording's channels or events
    before its commit, every listed recording's signal is whole."""
    from sozstore.models.inputs import recording_table

    store = tmp_path / "store"
    proc = subprocess.Popen(_etl_cmd(sites["alpha"], store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen_partial = 0
    n_reads = 0
    try:
        while proc.poll() is None:
            if not (store / "catalog").exists():
                time.sleep(0.05)
                continue
            s = Store.open(store)
            channels = s.read("channels")
            events = s.read("events")
            viewed = run_query(store, "SELECT DISTINCT recording_id FROM channels")
            recs = s.read("recordings")  # read last: commits only add rows during this run
            committed = set(recs["recording_id"].to_list())
            for ids in (channels["recording_id"], events["recording_id"],
                        viewed.column("recording_id").to_pylist()):
                assert set(ids) <= committed
            for row in recs.iter_rows(named=True):
                assert open_signals(s.signal_path(row["zarr_path"])).n_samples == \
                    row["n_samples"]
                n_ch = channels.filter(pl.col("recording_id") == row["recording_id"]).height
                seen_partial += 0 < n_ch < row["n_channels"]
            recording_table(store)
            for table in s.feature_tables():
                s.read(table)
            n_reads += 1
    finally:
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr + stdout
    assert n_reads >= 3, "the run ended before the readers could read"
    assert seen_partial == 0
    _assert_same_store(store, sites["ref_alpha"])


def test_uncommitted_recording_is_invisible(sites: dict, tmp_path: Path) -> None:
    """Channels and events of a recording without its ``recordings`` row (the commit) show
    neither in the store's readers nor in the DuckDB views."""
    store = tmp_path / "store"
    shutil.copytree(sites["ref_alpha"], store)
    s = Store.open(store)
    victim = s.read("recordings").sort("recording_id").row(0, named=True)
    s.fragment("recordings", victim["site"], victim["subject"],
               victim["recording_id"]).unlink()
    assert s.fragment("channels", victim["site"], victim["subject"],
                      victim["recording_id"]).exists()
    for table in ("channels", "events"):
        assert victim["recording_id"] not in s.read(table)["recording_id"].to_list()
        assert s.read(table, site="alpha", subject=victim["subject"]).filter(
            pl.col("recording_id") == victim["recording_id"]).is_empty()
        got = run_query(store, f"SELECT count(*) AS n FROM {table} WHERE recording_id = $rid",
                        {"rid": victim["recording_id"]})
        assert got.column("n").to_pylist() == [0]
    others = Store.open(sites["ref_alpha"]).read("channels").filter(
        pl.col("recording_id") != victim["recording_id"])
    assert s.read("channels").height == others.height > 0


def test_cleanup_spares_a_live_runs_temporaries(tmp_path: Path) -> None:
    """A temporary whose owner holds its lease survives cleanup; once the owner is dead
    (the lease file is there and can be locked) it is removed, and its lease with it."""
    root = tmp_path / "store"
    tmp = root / "catalog" / "recordings" / f"x.parquet{TMP_MARK}4242xabcd-0"
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(b"half")
    leaseless = root / "signals" / f"y.zarr{TMP_MARK}777-3"
    leaseless.mkdir(parents=True)
    fd = _open_locked(lease_path(root, "4242xabcd"), blocking=False)
    assert fd is not None
    try:
        assert clean_temporaries(root) == []
        assert tmp.exists() and leaseless.exists()
    finally:
        os.close(fd)  # what the kernel does when the owner dies
    assert clean_temporaries(root) == [tmp]
    assert not lease_path(root, "4242xabcd").exists()
    assert leaseless.exists()  # no lease and recent: not provably abandoned
    old = time.time() - 2 * 24 * 3600
    os.utime(leaseless, (old, old))
    assert clean_temporaries(root) == [leaseless]


def test_busy_site_gives_one_line(sites: dict, tmp_path: Path) -> None:
    """A run that cannot get the site's writer lock in time names the holder and stops."""
    store = tmp_path / "store"
    config = load_site_config(sites["alpha"])
    with writer_locks(store, [site_lock_name("alpha")]):
        report = run_site(config, store, progress=False, lock_wait_s=0.3)
    assert report.exit_code == 2 and report.results == []
    assert len(report.site_errors) == 1
    assert "is writing site=alpha" in report.site_errors[0]
    assert "try again" in report.site_errors[0]
    assert not list((store / "_locks").iterdir())  # released and removed


def test_busy_site_features(sites: dict, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(sites["ref_alpha"], store)
    with writer_locks(store, [site_lock_name("alpha")]):
        report = compute_features(store, site="alpha", progress=False, lock_wait_s=0.2)
    assert report.exit_code == 2
    assert len(report.failed) == 1 and "is writing site=alpha" in report.failed[0]


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_killing_the_parent_kills_its_workers(tmp_path: Path) -> None:
    toml = _site(tmp_path / "raw", "gamma", 4, 240.0, 20)
    proc = subprocess.Popen(_etl_cmd(toml, tmp_path / "store", "--workers", "2",
                                     "--no-features"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    workers: set[int] = set()
    while time.time() < deadline and proc.poll() is None:
        workers = {c for c in _children(proc.pid) if _alive(c)}
        # two workers started and writing (a signal's temporary exists)
        if len(workers) >= 2 and list((tmp_path / "store").glob(f"signals/*/*{TMP_MARK}*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "workers outlived their parent"
