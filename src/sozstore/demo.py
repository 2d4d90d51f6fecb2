"""The end-to-end demo behind the README's first line.

Generate a three-site cohort, ingest every site, compute the default features, run a few
named queries, then train and evaluate every model and baseline of the zoo with patient-wise
cross-validation and print the comparison table. With more subjects, more folds and
``full_size`` it is also the command behind the model evidence in the README.
"""

from __future__ import annotations

import time
from pathlib import Path

from sozstore.store._docs import fill_doc


@fill_doc
def run_demo(workdir: str | Path, *, subjects_per_site: int = 4, seed: int = 0,
             workers: int = 2, cv: int = 3, leave_site_out: bool = False,
             models: tuple[str, ...] | None = None, full_size: bool = False,
             progress: bool = True) -> int:
    """Run the demo; return an exit code (0 when every step succeeded).

    Parameters
    ----------
    workdir : str | Path
        Folder of the cohort (``cohort/``, reused when complete) and the store (``store/``).
    subjects_per_site : int
        Subjects the phantom generates per site.
    %(seed)s
        It draws the cohort and the models' folds.
    workers : int
        Recordings processed in parallel by the ETL and the features.
    cv : int
        Folds of the patient-wise cross-validation.
    leave_site_out : bool
        Also run leave-one-site-out.
    models : tuple of str, optional
        Zoo names to train (default: every model of the registry).
    full_size : bool
        The evidence runs' sizes (``ModelSpec.full``) instead of the demo's.
    %(progress)s

    Returns
    -------
    int
        0 on success, 1 if a step partly failed, 2 if a site ingested nothing.
    """
    from sozstore.console import (
        console,
        emit_table,
        print_etl_report,
        print_feature_report,
    )
    from sozstore.etl.config import load_site_config
    from sozstore.jobs import ingest_site
    from sozstore.models.experiment import comparison_table, evaluate_model
    from sozstore.models.registry import REGISTRY
    from sozstore.phantom import PhantomConfig, generate_cohort
    from sozstore.store import Store
    from sozstore.store.duck import run_named

    workdir = Path(workdir)
    cohort = workdir / "cohort"
    store = Store.open(workdir / "store")
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
        console.rule(f"2-3. etl and features of {toml.stem} (sozstore etl)")
        done = ingest_site(load_site_config(toml), store, workers=workers, progress=progress)
        print_etl_report(done.etl)
        if done.features is not None:
            print_feature_report(done.features)
        worst = max(worst, done.exit_code)
    console.rule("4. named queries (sozstore query NAME)")
    for name, params in (("cohort_summary", {}), ("soz_contrast", {}),
                         ("rate_ranking", {"top": "3", "site": "hup"})):
        console.print(f"[bold]sozstore query {name}[/bold]")
        emit_table(run_named(store, name, params), "table")
    console.rule("5. models (sozstore train MODEL)")
    if not full_size:
        console.print("demo sizes: SOZFormer d_model 32 with 1+1 layers on 8-clip windows, "
                      "DCGRU 1 layer of 32 units on 6-step graphs, SZLoc d_model 32; few "
                      "epochs (use --full-size for the published sizes)")
    protocols = [("cv", False)] + ([("loso", True)] if leave_site_out else [])
    tables = []
    for label, loso in protocols:
        results = []
        for model in models or tuple(REGISTRY):
            mt = time.perf_counter()
            result = evaluate_model(store, model, cv=cv, leave_site_out=loso,
                                    config=(REGISTRY[model].full if full_size else
                                            REGISTRY[model].demo) or None, seed=seed,
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
        protocol = "leave-one-site-out" if label == "loso" else f"patient-wise {cv}-fold CV"
        console.print(f"[bold]{protocol}[/bold] against the clinicians' labels (auroc_truth: "
                      "against the generator's true onset zone)")
        shown = table.select("model", "auroc", "auroc_truth", "auprc", "prevalence",
                             "patient_auroc", "recall", "specificity", "precision", "f1",
                             "seconds")
        emit_table(shown.to_arrow(), "table")
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; store at {store.root}; "
                  f"reports in {store.reports_dir}")
    return worst
