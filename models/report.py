"""A report per evaluation run: PNG figures and one HTML page that links them."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

if TYPE_CHECKING:
    from sozstore.models.runner import RunResult


def _roc_figure(result: "RunResult", path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for fold, g in result.predictions.partition_by("fold", as_dict=True).items():
        g = g.filter(pl.col("soz").is_not_null() & pl.col("score").is_finite())
        y = g["soz"].to_numpy().astype(bool)
        if 0 < y.sum() < y.size:
            fpr, tpr, _ = roc_curve(y, g["score"].to_numpy())
            ax.plot(fpr, tpr, lw=1.2, label=str(fold[0]))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate",
           title=f"{result.model}: ROC per fold (clinicians' labels)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _patient_figure(frame: pl.DataFrame, title: str, path: Path) -> None:
    frame = frame.sort("channel")
    n = frame.height
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * n), 3))
    soz = frame["soz"].fill_null(False).to_numpy()
    colors = np.where(soz, "#d62728", "#7f7f7f")
    ax.bar(np.arange(n), frame["score"].to_numpy(), color=colors)
    ax.axhline(frame["threshold"][0], color="k", lw=0.8, ls="--")
    if frame["soz_true"].null_count() < n:
        truth = frame["soz_true"].fill_null(False).to_numpy()
        ax.scatter(np.flatnonzero(truth), np.full(truth.sum(), ax.get_ylim()[1] * 0.98),
                   marker="v", color="#1f77b4", s=12, label="true onset zone")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(np.arange(n))
    ax.set_xticklabels(frame["channel"].to_list(), rotation=90, fontsize=5)
    ax.set(ylabel="score", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(store: str | Path, result: "RunResult") -> Path:
    """Write ``STORE/results/reports/<run_id>/index.html`` and its figures."""
    out = Path(store).resolve() / "results" / "reports" / result.run_id
    out.mkdir(parents=True, exist_ok=True)
    _roc_figure(result, out / "roc.png")
    patient_links = []
    for (key,), g in sorted(result.predictions.partition_by("key", as_dict=True).items()):
        name = key.replace("/", "_") + ".png"
        _patient_figure(g, f"{key} ({g['fold'][0]}): red = clinicians' SOZ", out / name)
        patient_links.append(f'<li><a href="{html.escape(name)}">{html.escape(key)}</a></li>')
    summary = result.metrics.filter(pl.col("fold") == "all").pivot(
        on="metric", index=["site", "reference"], values="value")
    cols = ["site", "reference", "auroc", "auprc", "prevalence", "patient_auroc_mean",
            "recall_mean", "specificity_mean", "precision_mean", "f1_mean", "n_patients"]
    cols = [c for c in cols if c in summary.columns]
    rows = "".join("<tr>" + "".join(
        f"<td>{v:.3f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
        for v in row) + "</tr>" for row in summary.select(cols).iter_rows())
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(result.run_id)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>{html.escape(result.model)}: {html.escape(result.protocol)}</h1>
<p>run {html.escape(result.run_id)}, {result.seconds:.0f} s. Thresholds by Youden's J on
validation patients; metrics pooled over held-out patients.</p>
<table><tr>{"".join(f"<th>{c}</th>" for c in cols)}</tr>{rows}</table>
<h2>ROC per fold</h2><img src="roc.png">
<h2>Per-patient channel maps</h2><ul>{"".join(patient_links)}</ul>
</body></html>"""
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


# --------------------------------------------------------------------------- generalisation
_REFERENCE_TEXT = {"clinician": "clinicians' SOZ labels", "truth": "true onset zone",
                   "resected": "resected contacts (seizure-free patients)"}
_PROTOCOL_ORDER = {"cv": 0, "loso": 1, "site": 2, "store": 3}


def _protocol_text(protocol: str) -> tuple[int, str]:
    """(sort order, plain words) of a protocol name."""
    if protocol.startswith("patient-") and protocol.endswith("-fold"):
        k = protocol[len("patient-"):-len("-fold")]
        return _PROTOCOL_ORDER["cv"], f"within cohort: {k}-fold cross-validation by patient"
    if protocol == "leave-one-site-out":
        return _PROTOCOL_ORDER["loso"], "within cohort: each site held out in turn"
    if protocol.startswith("test-site:"):
        return (_PROTOCOL_ORDER["site"],
                f"trained on the other sites, tested on site {protocol.split(':', 1)[1]}")
    if protocol.startswith("test-store:"):
        return (_PROTOCOL_ORDER["store"],
                f"other cohort: trained here, tested on {protocol.split(':', 1)[1]}")
    return 9, protocol


def _missing(*values: float | None) -> bool:
    return any(v is None or np.isnan(v) for v in values)


def _ci(value: float | None, lo: float | None, hi: float | None) -> str:
    if _missing(value):
        return "&ndash;"
    if _missing(lo, hi):
        return f"{value:.3f}"
    return f"{value:.3f} <small>({lo:.2f} to {hi:.2f})</small>"


def _verdict(lo: float | None, hi: float | None) -> str:
    if _missing(lo, hi):
        return "&ndash;"
    if lo > 0:
        return "better than spike rate"
    if hi < 0:
        return "worse than spike rate"
    return "no clear difference"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><i>No runs of this kind in the store.</i></p>"
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _forest_figure(diffs: pl.DataFrame, path: Path) -> bool:
    """Paired differences to spike rate with their intervals, one panel per reference and
    metric; returns False when there is nothing to draw."""
    diffs = diffs.filter(pl.col("value").is_not_null())
    if diffs.is_empty():
        return False
    refs = [r for r in ("clinician", "truth", "resected") if r in set(diffs["reference"])]
    metrics = [("diff_auroc", "pooled channel AUROC"),
               ("diff_patient_auroc_mean", "mean per-patient AUROC")]
    labels = (diffs.select("label", "order").unique().sort("order")["label"].to_list())
    n = len(labels)
    fig, axes = plt.subplots(len(metrics), len(refs), squeeze=False, sharey=True,
                             figsize=(3.6 * len(refs) + 2.5, 0.38 * n * len(metrics) + 1.8))
    for i, (metric, mtext) in enumerate(metrics):
        for j, ref in enumerate(refs):
            ax = axes[i][j]
            part = diffs.filter((pl.col("metric") == metric) & (pl.col("reference") == ref))
            for row in part.iter_rows(named=True):
                y = n - 1 - labels.index(row["label"])
                lo, hi = row["ci_low"], row["ci_high"]
                color = ("#2ca02c" if lo is not None and lo > 0 else
                         "#d62728" if hi is not None and hi < 0 else "#555555")
                if lo is not None and hi is not None:
                    ax.plot([lo, hi], [y, y], color=color, lw=1.6)
                ax.plot([row["value"]], [y], "o", color=color, ms=4)
            ax.axvline(0, color="k", lw=0.8, ls="--")
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels[::-1], fontsize=7)
            ax.set_ylim(-0.7, n - 0.3)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{mtext}\nvs {_REFERENCE_TEXT[ref]}", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("model minus spike rate (95% CI)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_generalisation_report(store: str | Path, out: str | Path | None = None) -> Path:
    """One page comparing every model across protocols: pooled metrics with
    patient-bootstrap 95 % intervals, the paired difference to spike rate, cross-cohort
    beside within-cohort rows, the resected-contacts subgroup, per-site rows and the leak
    controls, plus a forest plot of the differences. Uses the latest run of each (model,
    protocol, label permutation) in the store. Written to ``out`` (default
    ``STORE/results/reports/generalisation/index.html``) with its PNG beside it."""
    from sozstore.store.duck import run_query

    store = Path(store)
    out = (Path(out) if out is not None
           else store.resolve() / "results" / "reports" / "generalisation" / "index.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = pl.from_arrow(run_query(store, "SELECT * FROM runs"))
    metrics = pl.from_arrow(run_query(store, "SELECT * FROM metrics WHERE fold = 'all'"))
    assert isinstance(runs, pl.DataFrame) and isinstance(metrics, pl.DataFrame)
    for col in ("ci_low", "ci_high"):
        if col not in metrics.columns:  # a store whose runs all predate the intervals
            metrics = metrics.with_columns(pl.lit(None, pl.Float64).alias(col))
    latest = (runs.sort("created_at").group_by("model", "protocol", "shuffle_scope")
              .last())
    true_runs = latest.filter(pl.col("shuffle_scope").is_null())
    controls = latest.filter(pl.col("shuffle_scope").is_not_null())
    # models ordered by their within-cohort AUROC against the clinicians (best first)
    ranked = (true_runs.with_columns(pl.col("protocol").map_elements(
        lambda p: _protocol_text(p)[0], return_dtype=pl.Int64).alias("kind"))
        .sort("kind", pl.col("auroc").fill_null(-1.0), descending=[False, True]))
    model_order = list(dict.fromkeys(ranked["model"].to_list()))
    ordered = sorted(true_runs.iter_rows(named=True),
                     key=lambda r: (model_order.index(r["model"]),
                                    *_protocol_text(r["protocol"])))

    def get(run_id: str, reference: str, metric: str, site: str = "all"
            ) -> tuple[float | None, float | None, float | None]:
        row = metrics.filter((pl.col("run_id") == run_id) & (pl.col("reference") == reference)
                             & (pl.col("metric") == metric) & (pl.col("site") == site))
        if row.is_empty():
            return None, None, None
        return row["value"][0], row["ci_low"][0], row["ci_high"][0]

    def n_pat(run_id: str, reference: str, site: str = "all") -> str:
        v = get(run_id, reference, "n_patients", site)[0]
        return "&ndash;" if v is None else f"{v:.0f}"

    def comparator_of(r: dict) -> str:
        return r.get("comparator") or "spike_rate"

    def verdict(r: dict, lo: float | None, hi: float | None) -> str:
        return "(the baseline)" if r["model"] == comparator_of(r) else _verdict(lo, hi)

    perf, diff_rows, subgroup, per_site, forest = [], [], [], [], []
    for r in ordered:
        rid, proto = r["run_id"], _protocol_text(r["protocol"])[1]
        name = html.escape(r["model"])
        perf.append([name, html.escape(proto), n_pat(rid, "clinician"),
                     _ci(*get(rid, "clinician", "auroc")), _ci(*get(rid, "truth", "auroc")),
                     _ci(*get(rid, "clinician", "patient_auroc_mean")),
                     _ci(*get(rid, "truth", "patient_auroc_mean")),
                     _ci(*get(rid, "clinician", "auprc")),
                     _ci(*get(rid, "clinician", "prevalence")[:1], None, None),
                     _ci(*get(rid, "clinician", "f1_mean"))])
        for ref in ("clinician", "truth", "resected"):
            d_auc = get(rid, ref, "diff_auroc")
            d_pat = get(rid, ref, "diff_patient_auroc_mean")
            if d_auc[0] is None:
                continue
            for metric, d in (("diff_auroc", d_auc), ("diff_patient_auroc_mean", d_pat)):
                forest.append({"label": f"{r['model']} | {r['protocol']}", "reference": ref,
                               "metric": metric, "value": d[0], "ci_low": d[1],
                               "ci_high": d[2], "order": len(perf)})
            if r["model"] == comparator_of(r):
                continue
            diff_rows.append([name, html.escape(proto), html.escape(_REFERENCE_TEXT[ref]),
                              _ci(*d_auc), _verdict(*d_auc[1:]), _ci(*d_pat),
                              _verdict(*d_pat[1:])])
        if get(rid, "resected", "auroc")[0] is not None:
            subgroup.append([name, html.escape(proto), n_pat(rid, "resected"),
                             _ci(*get(rid, "resected", "auroc")),
                             _ci(*get(rid, "resected", "patient_auroc_mean")),
                             _ci(*get(rid, "resected", "diff_auroc")),
                             verdict(r, *get(rid, "resected", "diff_auroc")[1:])])
        sites = sorted(set(metrics.filter(pl.col("run_id") == rid)["site"]) - {"all"})
        for site in sites:
            per_site.append([name, html.escape(proto), html.escape(site),
                             n_pat(rid, "clinician", site),
                             _ci(*get(rid, "clinician", "auroc", site)),
                             _ci(*get(rid, "truth", "auroc", site)),
                             _ci(*get(rid, "clinician", "patient_auroc_mean", site)),
                             _ci(*get(rid, "clinician", "diff_auroc", site))])
    leak = [[html.escape(r["model"]), html.escape(_protocol_text(r["protocol"])[1]),
             "over the training cohort" if r["shuffle_scope"] == "cohort"
             else "within each patient", str(r["seed"]),
             _ci(*get(r["run_id"], "clinician", "auroc"))]
            for r in controls.sort("model", "protocol").iter_rows(named=True)]
    figure = out.with_name(out.stem + "_forest.png")
    has_figure = _forest_figure(pl.DataFrame(forest, schema={
        "label": pl.String, "reference": pl.String, "metric": pl.String,
        "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        "order": pl.Int64}), figure)
    n_boot = (runs["n_boot"].drop_nulls().max() if "n_boot" in runs.columns else None) or 1000
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Generalisation of SOZ models: {html.escape(str(store))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}
table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){{text-align:left}}
small{{color:#555}}</style></head><body>
<h1>How well do the models find the seizure onset zone on patients they were not trained on?</h1>
<p>Store <code>{html.escape(str(store.resolve()))}</code>: {true_runs.height} evaluation(s)
and {controls.height} leak control(s) (the latest run of each model and evaluation).</p>
<h2>How to read this</h2>
<p>Each model gives every contact a score; a higher score means the model thinks the contact
is more likely to be in the seizure onset zone. <b>AUROC</b> is the chance that a randomly
chosen onset-zone contact scores higher than a randomly chosen other contact (0.5 is
guessing, 1.0 is perfect). "Pooled" AUROC ranks the contacts of all test patients together;
"per-patient" AUROC ranks each patient's contacts separately and averages over patients
(closer to how the scores are read at the bedside). <b>AUPRC</b> is the precision averaged
over recall levels (guessing gives the share of onset-zone contacts, shown as
"chance AUPRC"). Patients are only ever scored by a model that did not see them in
training. Numbers in brackets are 95% intervals from resampling patients
({n_boot} patient-bootstrap resamples): with few patients they are wide, below about ten
patients they are also too narrow to trust, and a single patient gets none. A difference
whose interval contains 0 is not established. The spike-rate ranking is the clinical
baseline: every model is compared with it <b>on the same patients and the same
resamples</b> (a paired difference), which is what "better than spike rate" means below.
Three references are used: the clinicians' SOZ labels, the generator's true onset zone (on
synthetic cohorts only), and, in patients seizure-free after surgery (Engel I or ILAE 1-2),
the resected contacts. "Other cohort" rows train on this store and test on a different
store (another site family or a different simulator setting): they show how much of the
within-cohort performance carries over.</p>
<h2>1. Performance on held-out patients</h2>
{_html_table(["Model", "Evaluation", "Patients", "AUROC vs clinicians",
              "AUROC vs true onset zone", "Per-patient AUROC vs clinicians",
              "Per-patient AUROC vs true onset zone", "AUPRC vs clinicians",
              "Chance AUPRC", "F1 at the chosen threshold"], perf)}
<h2>2. Difference to the spike-rate baseline (same patients, paired)</h2>
{_html_table(["Model", "Evaluation", "Reference", "Difference in AUROC", "Verdict",
              "Difference in per-patient AUROC", "Verdict"], diff_rows)}
{'<img src="' + html.escape(figure.name) + '" alt="forest plot">' if has_figure else ''}
<p><small>Forest plot: each line is a model and evaluation; the dot is the difference to
spike rate, the bar its 95% interval; green: interval above 0, red: below 0.</small></p>
<h2>3. Seizure-free patients: resected contacts as the reference</h2>
{_html_table(["Model", "Evaluation", "Seizure-free patients", "AUROC", "Per-patient AUROC",
              "Difference in AUROC to spike rate", "Verdict"], subgroup)}
<h2>4. Per site</h2>
{_html_table(["Model", "Evaluation", "Site", "Patients", "AUROC vs clinicians",
              "AUROC vs true onset zone", "Per-patient AUROC vs clinicians",
              "Difference in AUROC to spike rate"], per_site)}
<h2>5. Leak controls (labels permuted in training; should be near 0.5)</h2>
{_html_table(["Model", "Evaluation", "Labels permuted", "Seed", "AUROC vs clinicians"], leak)}
</body></html>"""
    out.write_text(page, encoding="utf-8")
    return out
