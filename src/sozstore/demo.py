"""The end-to-end demo behind the README's first line.

Generate a three-site cohort, ingest every site, compute the default features, run a few
named queries, then train and evaluate every model and baseline of the zoo with patient-wise
cross-validation and print the comparison table. With more subjects, more folds and
``full_size`` it is also the command behind the model evidence in the README.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

#: Model sizes and training lengths of the quick demo (stated in its output): the
#: networks are shrunk so every model trains in about a minute on two CPU cores.
DEMO_CONFIGS: dict[str, dict[str, Any]] = {
    "sozformer": {"model": {"d_model": 32, "n_heads": 4, "n_temporal_layers": 1,
                            "n_spatial_layers": 1, "dim_feedforward": 64},
                  "epochs": 8, "n_clips": 8, "batch_size": 8, "patience": 4, "threads": 1,
                  "pretrain_epochs": 2},
    "dcgru": {"model": {"hidden": 32, "n_layers": 1}, "epochs": 8, "n_steps": 6,
              "batch_size": 8, "pretrain_epochs": 2, "patience": 4, "threads": 1},
    "szloc": {"model": {"d_model": 32, "n_heads": 4, "dim_feedforward": 64}, "epochs": 3,
              "raw_steps": 45, "batch_size": 4, "patience": 2, "threads": 1},
}
#: Sizes for the evidence runs (``--full-size``): the published defaults, fewer epochs.
FULL_CONFIGS: dict[str, dict[str, Any]] = {
    "sozformer": {"epochs": 25, "n_clips": 12, "batch_size": 8, "patience": 6},
    "dcgru": {"model": {"hidden": 64, "n_layers": 2}, "epochs": 20, "n_steps": 12,
              "pretrain_epochs": 5, "patience": 6},
    "szloc": {"epochs": 10, "raw_steps": 45, "batch_size": 4, "patience": 4},
}


def run_demo(workdir: str | Path, *, subjects_per_site: int = 4, seed: int = 0,
             workers: int = 2, cv: int = 3, leave_site_out: bool = False,
             models: tuple[str, ...] | None = None, full_size: bool = False,
             console: Console | None = None) -> int:
    """Run the demo; return an exit code (0 when every step succeeded)."""
    from sozstore.cli import emit_table, print_report
    from sozstore.etl.config import load_site_config
    from sozstore.etl.features.engine import compute_features
    from sozstore.etl.pipeline import run_site
    from sozstore.models.runner import comparison_table, evaluate_model
    from sozstore.models.zoo import ZOO
    from sozstore.phantom import PhantomConfig, generate_cohort
    from sozstore.store.duck import run_named

    console = console or Console()
    workdir = Path(workdir)
    cohort = workdir / "cohort"
    store = workdir / "store"
    t0 = time.perf_counter()
    console.rule("1. phantom cohort (sozstore phantom)")
    # Demo size: chul's long interictal recordings last 5 minutes here (the generator's
    # default is an hour) so that the whole demo runs in minutes on two cores.
    config = PhantomConfig(chul_interictal_hours=5 / 60)
    if (cohort / "truth" / "channels.parquet").exists():
        console.print(f"reusing the cohort in {cohort}")
    else:
        generate_cohort(cohort, subjects_per_site=subjects_per_site, seed=seed, config=config)
    console.print(f"{subjects_per_site} subjects per site in {time.perf_counter() - t0:.1f} s "
                  f"(demo size: chul interictal recordings of "
                  f"{config.chul_interictal_hours * 60:.0f} min)")
    worst = 0
    for toml in sorted((cohort / "sites").glob("*.toml")):
        console.rule(f"2. etl {toml.stem} (sozstore etl)")
        report = run_site(load_site_config(toml), store, workers=workers)
        print_report(report)
        worst = max(worst, report.exit_code)
    console.rule("3. features (sozstore features)")
    feats = compute_features(store, workers=workers)
    console.print(f"{len(feats.computed)} partitions computed, {len(feats.up_to_date)} up to "
                  f"date, {feats.channel_hours:.1f} channel-hours in {feats.seconds:.1f} s")
    worst = max(worst, feats.exit_code)
    console.rule("4. named queries (sozstore query NAME)")
    for name, params in (("cohort_summary", {}), ("soz_contrast", {}),
                         ("rate_ranking", {"top": "3", "site": "hup"})):
        console.print(f"[bold]sozstore query {name}[/bold]")
        emit_table(run_named(store, name, params), "table")
    console.rule("5. models (sozstore train MODEL)")
    sizes = FULL_CONFIGS if full_size else DEMO_CONFIGS
    if not full_size:
        console.print("demo sizes: SOZFormer d_model 32 with 1+1 layers on 8-clip windows, "
                      "DCGRU 1 layer of 32 units on 6-step graphs, SZLoc d_model 32; few "
                      "epochs (use --full-size for the published sizes)")
    protocols = [("cv", False)] + ([("loso", True)] if leave_site_out else [])
    tables = []
    for label, loso in protocols:
        results = []
        for model in models or ZOO:
            mt = time.perf_counter()
            result = evaluate_model(store, model, cv=cv, leave_site_out=loso,
                                    config=sizes.get(model), seed=seed,
                                    truth_dir=cohort / "truth")
            results.append(result)
            s = result.summary()
            console.print(f"{model:<10} {result.protocol:<20} channel AUROC "
                          f"{s.get('auroc', float('nan')):.3f}  patient-macro F1 "
                          f"{s.get('f1_mean', float('nan')):.3f}  "
                          f"({time.perf_counter() - mt:.0f} s)")
        table = comparison_table(results)
        truth_table = comparison_table(results, reference="truth").select(
            "model", auroc_truth="auroc")
        tables.append((label, table.join(truth_table, on="model", how="left")
                       .sort("auroc", descending=True, nulls_last=True)))
    console.rule("6. comparison (channel AUROC pooled over held-out patients; chance = 0.5; "
                 "AUPRC chance = prevalence)")
    for label, table in tables:
        console.print(f"[bold]{'leave-one-site-out' if label == 'loso' else f'patient-wise {cv}-fold CV'}"
                      "[/bold] against the clinicians' labels (auroc_truth: against the "
                      "generator's true onset zone)")
        shown = table.select("model", "auroc", "auroc_truth", "auprc", "prevalence",
                             "patient_auroc", "recall", "specificity", "precision", "f1",
                             "seconds")
        emit_table(shown.to_arrow(), "table")
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; store at {store}; "
                  f"reports in {store / 'results' / 'reports'}")
    return worst
