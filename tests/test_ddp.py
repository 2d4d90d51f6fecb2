"""Training under torchrun with DistributedDataParallel (gloo on CPU, two processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from sozstore.store.duck import run_query


@pytest.mark.slow
def test_torchrun_two_processes(phantom_store: tuple[Path, Path], tmp_path: Path) -> None:
    store, _ = phantom_store
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "model": {"d_model": 16, "n_heads": 2, "n_temporal_layers": 1, "n_spatial_layers": 1,
                  "dim_feedforward": 32},
        "epochs": 2, "n_clips": 4, "batch_size": 4, "max_batches_per_epoch": 3}))
    def n_runs() -> int:
        if not list((store / "results" / "runs").glob("run=sozformer-*")):
            return 0
        return pl.from_arrow(run_query(
            store, "SELECT count(*) AS n FROM runs WHERE model = 'sozformer'")).item()

    before = n_runs()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29533", "-m", "sozstore.cli", "train", "sozformer", "--store",
         str(store), "--cv", "2", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert n_runs() == before + 1  # only rank 0 writes results
    assert proc.stdout.count("channel AUROC") == 1  # and reports
