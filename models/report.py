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
