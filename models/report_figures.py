"""Figures and HTML pieces of the run report, as pure functions of polars frames.

Nothing here reads or writes the store: :mod:`sozstore.models.report` loads a run's tables
and writes the pages. Figures are matplotlib (Agg) and reach the page as base64 PNG
``data:`` URIs, so each page is one self-contained file.

Contacts are always shown in the order of the implanted shafts: shafts in natural order of
their names (``LA``, ``LB``, ``LE``; ``A``, ``A'``), then contact number (1, 2, ..., 10),
never in string order (``LE1, LE10, LE11, LE2``).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from sozstore.models.metrics import per_patient_values

#: Label column of the predictions table -> words for a clinician.
REFERENCE_WORDS = {"soz": "clinicians' SOZ", "soz_true": "true onset zone",
                   "soz_resected": "resected contacts"}
_CMAP = "viridis"
_SOZ_COLOUR = "#d62728"
_TRUTH_COLOUR = "#1f77b4"
_RESECTED_COLOUR = "#8c564b"
_BAD_FACE = "#d9d9d9"
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}


# --------------------------------------------------------------------------- ordering
def natural_key(text: str | None) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the digit runs of ``text`` by value: ``LE2`` before ``LE10``."""
    parts = re.split(r"(\d+)", text or "")
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def split_contact_name(channel: str) -> tuple[str, int | None]:
    """(shaft, contact number) parsed from a name such as ``LE10`` or ``B'3``; the number is
    None when the name does not end in digits."""
    match = re.fullmatch(r"(.*?)(\d+)", channel.strip())
    if match is None or not match.group(1):
        return channel, None
    return match.group(1), int(match.group(2))


def order_contacts(contacts: pl.DataFrame) -> pl.DataFrame:
    """Contacts with ``shaft`` and ``number`` columns, sorted by shaft then contact number.

    ``contacts`` has ``channel`` and optionally the catalog's ``electrode`` and ``contact``
    columns; where those are null the name is parsed (:func:`split_contact_name`).
    """
    parsed = [split_contact_name(c) for c in contacts["channel"].to_list()]
    electrode = (contacts["electrode"].to_list() if "electrode" in contacts.columns
                 else [None] * contacts.height)
    number = (contacts["contact"].to_list() if "contact" in contacts.columns
              else [None] * contacts.height)
    shafts = [e if e else p[0] for e, p in zip(electrode, parsed)]
    numbers = [n if n is not None else p[1] for n, p in zip(number, parsed)]
    out = contacts.with_columns(pl.Series("shaft", shafts, pl.String),
                                pl.Series("number", numbers, pl.Int64))
    order = sorted(range(out.height), key=lambda i: (
        natural_key(shafts[i]), numbers[i] if numbers[i] is not None else 10**9,
        natural_key(out["channel"][i])))
    return out[order]


# --------------------------------------------------------------------------- colour scale
def scores_are_probabilities(scores: NDArray[np.float64]) -> bool:
    """True when every finite score lies in [0, 1] (a network's sigmoid output); the
    rate baselines give z-scores and the SVM a margin, which are not probabilities."""
    finite = np.asarray(scores, dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(finite.size) and bool(finite.min() >= 0.0 and finite.max() <= 1.0)


def colour_scale(scores: NDArray[np.float64]
                 ) -> tuple[Callable[[NDArray[np.float64]], NDArray[np.float64]], str]:
    """A map from a run's scores to 0..1 and the words for its colour bar.

    Probabilities are shown as they are. Other scores are shown as their percentile among
    all the run's held-out contacts (0: lowest score of the run, 1: highest), so the colour
    keeps the model's ranking without pretending to be a probability.
    """
    scores = np.asarray(scores, dtype=float)
    if scores_are_probabilities(scores):
        return (lambda x: np.clip(np.asarray(x, dtype=float), 0.0, 1.0),
                "predicted probability of onset zone")
    reference = np.sort(scores[np.isfinite(scores)])

    def percentile(x: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=float)
        if reference.size < 2:
            return np.where(np.isfinite(x), 0.5, np.nan)
        below = np.searchsorted(reference, x, side="left")
        upto = np.searchsorted(reference, x, side="right")
        rank = (below + upto - 1) / 2.0 / (reference.size - 1)
        return np.where(np.isfinite(x), np.clip(rank, 0.0, 1.0), np.nan)

    return percentile, "score percentile among all held-out contacts of this run"


# --------------------------------------------------------------------------- outcome
def outcome_text(engel_class: int | None, engel_subclass: str | None, ilae_class: int | None,
                 seizure_free: bool | None) -> str:
    """The surgical outcome in words, e.g. ``Engel IB, ILAE 1 (seizure-free)``."""
    parts = []
    if engel_class is not None:
        parts.append(f"Engel {_ROMAN.get(engel_class, str(engel_class))}"
                     f"{engel_subclass or ''}")
    if ilae_class is not None:
        parts.append(f"ILAE {ilae_class}")
    text = ", ".join(parts) if parts else "outcome not recorded"
    if seizure_free is True:
        text += " (seizure-free)"
    elif seizure_free is False:
        text += " (not seizure-free)"
    return text


# --------------------------------------------------------------------------- metrics
def patient_metrics(predictions: pl.DataFrame, label: str = "soz") -> pl.DataFrame:
    """Per patient: contacts scored, onset-zone contacts, contacts at or above the fold's
    threshold, AUROC, AUPRC, recall and precision at the threshold, against ``label``.

    ``predictions`` is a run's predictions table (``key``, ``score``, ``threshold``,
    ``label``). AUROC and AUPRC are NaN for a patient whose labelled contacts are all of one
    class; recall is NaN without an onset-zone contact; precision is 0 when no contact
    reaches the threshold (as in :func:`sozstore.models.metrics.per_patient_values`).
    """
    rows: list[dict[str, Any]] = []
    for (key,), g in predictions.group_by("key", maintain_order=True):
        scored = g.filter(pl.col("score").is_finite())
        labelled = scored.filter(pl.col(label).is_not_null())
        row: dict[str, Any] = {"key": key, "n_scored": scored.height,
                               "n_positive": int(labelled[label].sum() or 0),
                               "n_predicted": int((scored["score"] >= scored["threshold"]).sum()),
                               "auroc": np.nan, "auprc": np.nan, "recall": np.nan,
                               "precision": np.nan}
        if labelled.height:
            shifted = labelled.with_columns(pl.col("score") - pl.col("threshold"))
            _, values, _ = per_patient_values(shifted, 0.0, label=label)
            row["recall"], row["precision"], row["auroc"] = values[0, [0, 2, 4]]
            y = labelled[label].to_numpy().astype(bool)
            if 0 < y.sum() < y.size:
                row["auprc"] = float(average_precision_score(y, labelled["score"].to_numpy()))
        rows.append(row)
    return pl.DataFrame(rows, schema={
        "key": pl.String, "n_scored": pl.Int64, "n_positive": pl.Int64,
        "n_predicted": pl.Int64, "auroc": pl.Float64, "auprc": pl.Float64,
        "recall": pl.Float64, "precision": pl.Float64}).sort("key")


# --------------------------------------------------------------------------- figures
def figure_data_uri(fig: Figure, *, dpi: int = 100) -> str:
    """The figure as a base64 PNG ``data:`` URI (and the figure closed)."""
    buffer = io.BytesIO()
    # "tight" keeps legends placed outside the axes (the contact map's) inside the image
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def contact_map_figure(contacts: pl.DataFrame, *, title: str, colour_label: str,
                       threshold: float | None, threshold_text: str) -> Figure:
    """Contacts of one patient as strips, one row per shaft in contact order.

    ``contacts`` (ordered, see :func:`order_contacts`) has ``shaft``, ``number``,
    ``channel``, ``value`` (0..1, null when the contact was not scored), ``bad``, ``soz``,
    ``resected`` and ``soz_true`` (null columns allowed). Colour is ``value``; contacts at or
    above ``threshold`` (on the same 0..1 scale) get a thick black outline; bad contacts are
    grey and hatched; a red triangle above a contact marks the clinicians' SOZ, a blue star
    the true onset zone (generated cohorts), a brown bar below it a resected contact.
    """
    shafts = list(dict.fromkeys(contacts["shaft"].to_list()))
    numbers = [n for n in contacts["number"].to_list() if n is not None]
    max_number = max(numbers, default=contacts.height)
    cmap = plt.get_cmap(_CMAP)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * max_number + 3.0),
                                    0.8 * len(shafts) + 2.2))
    row_gap = 1.8
    has_truth = contacts["soz_true"].null_count() < contacts.height
    has_resected = bool(contacts["resected"].fill_null(False).any())
    position_in_shaft: dict[str, int] = {}
    for r in contacts.iter_rows(named=True):
        y = shafts.index(r["shaft"]) * row_gap
        index = position_in_shaft.get(r["shaft"], 0) + 1
        position_in_shaft[r["shaft"]] = index
        x = float(r["number"] if r["number"] is not None else index)
        value = r["value"]
        scored = value is not None and np.isfinite(value)
        above = scored and threshold is not None and value >= threshold
        face = cmap(value) if scored else _BAD_FACE
        ax.add_patch(Rectangle((x - 0.45, y - 0.45), 0.9, 0.9, facecolor=face,
                               edgecolor="black" if above else "#888888",
                               linewidth=2.6 if above else 0.6,
                               hatch="////" if r["bad"] else None))
        dark = scored and float(np.mean(to_rgb(face))) < 0.5
        ax.text(x, y, str(r["number"] if r["number"] is not None else r["channel"]),
                ha="center", va="center", fontsize=7, color="white" if dark else "black")
        if r["soz"]:
            ax.plot(x - 0.18 if has_truth else x, y - 0.72, marker="v", color=_SOZ_COLOUR,
                    ms=7, ls="none")
        if has_truth and r["soz_true"]:
            ax.plot(x + 0.18, y - 0.72, marker="*", color=_TRUTH_COLOUR, ms=8, ls="none")
        if r["resected"]:
            ax.plot([x - 0.45, x + 0.45], [y + 0.62, y + 0.62], color=_RESECTED_COLOUR, lw=3)
    ax.set_xlim(0.3, max_number + 0.7)
    ax.set_ylim((len(shafts) - 1) * row_gap + 1.0, -1.1)
    ax.set_yticks([i * row_gap for i in range(len(shafts))])
    ax.set_yticklabels(shafts, fontsize=9)
    ax.set_ylabel("electrode (shaft)")
    ax.set_xlabel("contact number along the electrode")
    ax.set_xticks(range(1, max_number + 1))
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=10)
    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap)
    bar = fig.colorbar(mappable, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(colour_label, fontsize=8)
    if threshold is not None:
        bar.ax.axhline(threshold, color="black", lw=2)
    handles: list[Any] = [
        Patch(facecolor="white", edgecolor="black", linewidth=2.6, label=threshold_text),
        Line2D([], [], marker="v", color=_SOZ_COLOUR, ls="none", label="clinicians' SOZ"),
    ]
    if has_truth:
        handles.append(Line2D([], [], marker="*", color=_TRUTH_COLOUR, ls="none", ms=9,
                              label="true onset zone (generated cohort)"))
    if has_resected:
        handles.append(Line2D([], [], color=_RESECTED_COLOUR, lw=3, label="resected"))
    handles.append(Patch(facecolor=_BAD_FACE, edgecolor="#888888", hatch="////",
                         label="bad channel (grey: not scored)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14),
              ncol=2, frameon=False, handlelength=2.2)
    fig.tight_layout()
    return fig


def curves_figure(predictions: pl.DataFrame, labels: Sequence[str]) -> Figure:
    """ROC and precision-recall curves of every fold (held-out patients), one row per label
    column in ``labels``."""
    fig, axes = plt.subplots(len(labels), 2, figsize=(9.5, 4.2 * len(labels)), squeeze=False)
    folds = sorted(set(predictions["fold"].to_list()), key=natural_key)
    for row, label in enumerate(labels):
        roc_ax, pr_ax = axes[row]
        words = REFERENCE_WORDS.get(label, label)
        prevalences = []
        for fold in folds:
            g = predictions.filter((pl.col("fold") == fold) & pl.col(label).is_not_null()
                                   & pl.col("score").is_finite())
            y = g[label].to_numpy().astype(bool)
            if not 0 < y.sum() < y.size:
                continue
            s = g["score"].to_numpy()
            fpr, tpr, _ = roc_curve(y, s)
            precision, recall, _ = precision_recall_curve(y, s)
            roc_ax.plot(fpr, tpr, lw=1.4, label=f"{fold} ({g['key'].n_unique()} patients)")
            pr_ax.plot(recall, precision, lw=1.4, drawstyle="steps-post", label=fold)
            prevalences.append(y.mean())
        roc_ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
        if prevalences:
            pr_ax.axhline(float(np.mean(prevalences)), color="k", ls="--", lw=0.8,
                          label="chance (share of onset-zone contacts)")
        roc_ax.set(xlabel="false positive rate (share of other contacts flagged)",
                   ylabel="true positive rate (share of onset zone found)",
                   xlim=(0, 1), ylim=(0, 1.02), title=f"ROC per fold vs {words}")
        pr_ax.set(xlabel="recall (share of onset zone found)",
                  ylabel="precision (share of flagged contacts in onset zone)",
                  xlim=(0, 1), ylim=(0, 1.02), title=f"Precision-recall per fold vs {words}")
        for ax in (roc_ax, pr_ax):
            ax.legend(fontsize=7, loc="lower right" if ax is roc_ax else "lower left")
            ax.xaxis.label.set_fontsize(8)
            ax.yaxis.label.set_fontsize(8)
            ax.title.set_fontsize(10)
    fig.tight_layout()
    return fig


def calibration_points(values: NDArray[np.float64], y: NDArray[np.bool_], n_bins: int = 10
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Mean value, share of positives and count in each of ``n_bins`` equal-count bins of
    ``values`` (fewer bins when values tie)."""
    values = np.asarray(values, dtype=float)
    y = np.asarray(y, dtype=bool)
    order = np.argsort(values, kind="stable")
    bins = [b for b in np.array_split(order, max(1, min(n_bins, values.size))) if b.size]
    return (np.array([values[b].mean() for b in bins]), np.array([y[b].mean() for b in bins]),
            np.array([b.size for b in bins], dtype=np.int64))


def calibration_figure(values: NDArray[np.float64], y: NDArray[np.bool_], *,
                       is_probability: bool, colour_label: str) -> Figure:
    """Observed share of clinicians' SOZ contacts against the predicted probability (with
    the diagonal of perfect calibration), or against the score percentile when the model's
    scores are not probabilities (then only the rise with the score can be read)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    finite = np.isfinite(values)
    mean_value, share, count = calibration_points(values[finite], y[finite])
    if is_probability:
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        title = "Calibration: predicted probability vs observed"
    else:
        ax.axhline(float(y[finite].mean()) if finite.any() else 0.0, color="k", ls="--",
                   lw=0.8, label="overall share of onset-zone contacts")
        title = "Share of onset-zone contacts by score\n(scores are not probabilities)"
    ax.plot(mean_value, share, "o-", color=_SOZ_COLOUR, lw=1.4,
            label=f"held-out contacts ({int(count.sum())}, {count.size} equal-count bins)")
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel=colour_label,
           ylabel="observed share in the clinicians' SOZ", title=title)
    ax.xaxis.label.set_fontsize(8)
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- HTML
PAGE_STYLE = """body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
td,th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}
img{max-width:100%;height:auto;display:block;margin:0.5em 0 1.5em 0}
small{color:#555}"""


def number_cell(value: float | None, digits: int = 2) -> str:
    """A number for a table cell (an en dash when missing or NaN)."""
    if value is None or not np.isfinite(value):
        return "&ndash;"
    return f"{value:.{digits}f}"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
               table_id: str | None = None) -> str:
    """An HTML table; ``header`` is escaped, cells are HTML already."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}><tr>{head}</tr>{body}</table>"


def html_page(title: str, body: str) -> str:
    """A complete, self-contained HTML page."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            # an empty icon: without it the browser asks the server for /favicon.ico and
            # logs the 404 as a console error
            f'<link rel="icon" href="data:,"><style>{PAGE_STYLE}</style></head>'
            f"<body>{body}</body></html>")
