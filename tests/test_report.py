"""The clinician's run report: contacts by shaft in contact order, threshold, bad channels,
outcome and (on generated cohorts) the true onset zone; pages regenerated from a stored run.
The same pages in a real browser: tests/test_report_browser.py."""

from __future__ import annotations

import base64
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sozstore.models import report_figures as rf
from sozstore.models.experiment import evaluate_model
from sozstore.models.report import patient_page_name, write_run_report
from sozstore.store.catalog import read_table


@pytest.fixture(scope="module")
def report_run(phantom_store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Path, str]:
    """(store, run id): spike rate, 3-fold, with the true onset zone, trained on a copy of
    the shared phantom store (so other tests' run listings are untouched) and reported by
    the runner's own entry (``write_report``)."""
    source, truth = phantom_store
    store = tmp_path_factory.mktemp("report_store") / "store"
    shutil.copytree(source, store, ignore=shutil.ignore_patterns("results"))
    result = evaluate_model(store, "spike_rate", cv=3, truth_dir=truth, n_boot=20)
    return store, result.run_id


class _Page(HTMLParser):
    """Images, links, tables (by id: list of rows of cell texts) and the title of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.title = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "a":
            self.links.append(a.get("href") or "")
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data


def _rows(page: _Page, table: str) -> list[dict[str, str]]:
    header, *body = page.tables[table]
    return [dict(zip(header, row)) for row in body]


# --------------------------------------------------------------------------- pure parts
def test_contacts_in_natural_order_by_shaft() -> None:
    names = ["LE10", "LE2", "LE1", "LA3", "LE11", "B'2", "B'10", "B'1"]
    ordered = rf.order_contacts(pl.DataFrame({"channel": names}))
    assert ordered["channel"].to_list() == ["B'1", "B'2", "B'10", "LA3", "LE1", "LE2", "LE10",
                                            "LE11"]
    assert ordered["shaft"].to_list()[:3] == ["B'"] * 3 and ordered["number"][-1] == 11
    # the catalog's electrode and contact columns win over the name
    catalog = pl.DataFrame({"channel": ["X9", "X10", "Y1"], "electrode": ["Y", "X", "X"],
                            "contact": [3, 1, 2]})
    assert rf.order_contacts(catalog)["channel"].to_list() == ["X10", "Y1", "X9"]


def test_colour_scale_probabilities_kept_other_scores_as_percentiles() -> None:
    to_colour, label = rf.colour_scale(np.array([0.1, 0.9, 0.5]))
    assert "probability" in label
    np.testing.assert_allclose(to_colour(np.array([0.2, 0.7])), [0.2, 0.7])
    z = np.array([-2.0, -1.0, 0.0, 1.0, 3.0])
    to_colour, label = rf.colour_scale(z)
    assert "percentile" in label and not rf.scores_are_probabilities(z)
    np.testing.assert_allclose(to_colour(z), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.isnan(to_colour(np.array([np.nan]))[0])


def test_outcome_in_words() -> None:
    assert rf.outcome_text(1, "B", None, True) == "Engel IB (seizure-free)"
    assert rf.outcome_text(1, None, 2, True) == "Engel I, ILAE 2 (seizure-free)"
    assert rf.outcome_text(4, "B", None, False) == "Engel IVB (not seizure-free)"
    assert rf.outcome_text(None, None, None, None) == "outcome not recorded"


def test_patient_metrics_at_the_folds_threshold() -> None:
    frame = pl.DataFrame({
        "key": ["a/1"] * 5 + ["b/2"] * 3,
        "score": [0.9, 0.8, 0.3, 0.2, 0.1, 5.0, 4.0, 1.0],
        "threshold": [0.5] * 5 + [4.5] * 3,
        "soz": [True, False, True, False, False, True, True, False]})
    m = {r["key"]: r for r in rf.patient_metrics(frame).iter_rows(named=True)}
    a = m["a/1"]
    assert (a["n_scored"], a["n_positive"], a["n_predicted"]) == (5, 2, 2)
    assert a["recall"] == 0.5 and a["precision"] == 0.5
    y = np.array([1, 0, 1, 0, 0], bool)
    s = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    assert a["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert a["auprc"] == pytest.approx(average_precision_score(y, s))
    assert m["b/2"]["recall"] == 0.5 and m["b/2"]["precision"] == 1.0  # own threshold 4.5


def test_contact_map_marks_threshold_bad_soz_truth_resected() -> None:
    contacts = rf.order_contacts(pl.DataFrame({
        "channel": ["A1", "A2", "A3", "B1", "B2"],
        "value": [0.9, 0.2, None, 0.7, 0.1],
        "bad": [False, False, True, False, False],
        "soz": [True, False, False, True, False],
        "resected": [True, True, False, False, False],
        "soz_true": [True, False, False, False, False]}))
    fig = rf.contact_map_figure(contacts, title="Patient x: Engel IA", colour_label="p",
                                threshold=0.6, threshold_text="at or above 0.6")
    ax = fig.axes[0]
    squares = ax.patches
    assert len(squares) == 5
    assert sum(p.get_linewidth() > 2 for p in squares) == 2  # 0.9 and 0.7
    assert sum(bool(p.get_hatch()) for p in squares) == 1
    markers = {m: sum(int(np.size(line.get_xdata())) for line in ax.lines
                      if line.get_marker() == m) for m in ("v", "*")}
    assert markers == {"v": 2, "*": 1}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    legend_box = ax.get_legend()
    assert legend_box is not None
    legend = [t.get_text() for t in legend_box.get_texts()]
    assert "at or above 0.6" in legend and "resected" in legend
    assert ax.get_title() == "Patient x: Engel IA"
    rf.figure_data_uri(fig)


# --------------------------------------------------------------------------- stored run
def test_run_page_lists_every_patient_with_figures_inline(report_run: tuple[Path, str]
                                                           ) -> None:
    store, run_id = report_run
    out = store / "results" / "reports" / run_id
    assert (out / "roc.png").exists()
    page = _Page((out / "index.html").read_text())
    preds = pl.read_parquet(store / "results" / "predictions" / f"run={run_id}" /
                            "part.parquet")
    keys = sorted(set(preds["key"]))
    assert sorted(page.links) == sorted(patient_page_name(k) for k in keys)
    assert all((out / link).exists() for link in page.links)
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    patients = _rows(page, "patients")
    assert len(patients) == len(keys)
    assert {"AUROC", "AUPRC", "Recall at threshold", "Precision at threshold",
            "Surgical outcome", "AUROC vs true onset zone"} <= set(patients[0])
    assert all(r["Surgical outcome"].startswith("Engel ") for r in patients)
    references = [r["Reference"] for r in _rows(page, "summary")]
    assert references[0] == "clinicians' SOZ" and any("true onset" in r for r in references)


def test_patient_pages_contacts_in_order_with_labels(report_run: tuple[Path, str]) -> None:
    store, run_id = report_run
    out = store / "results" / "reports" / run_id
    preds = pl.read_parquet(store / "results" / "predictions" / f"run={run_id}" /
                            "part.parquet")
    channels = read_table(store, "channels").filter(pl.col("type").is_in(["seeg", "ecog"]))
    subjects = read_table(store, "subjects")
    seen_bad = 0
    for (key,), own in preds.group_by("key"):
        site, subject = key.split("/")
        page = _Page((out / patient_page_name(key)).read_text())
        sub = subjects.filter((pl.col("site") == site) & (pl.col("subject") == subject))
        outcome = rf.outcome_text(*sub.select("engel_class", "engel_subclass", "ilae_class",
                                              "seizure_free").row(0))
        assert page.title == f"Patient {key}: {outcome}" and "Engel" in page.title
        assert len(page.images) == 1 and page.images[0].startswith("data:image/png")
        assert page.links == ["index.html"]
        rows = _rows(page, "contacts")
        mine = channels.filter((pl.col("site") == site) & (pl.col("subject") == subject))
        assert {r["Contact"] for r in rows} == set(mine["channel"])
        # shaft by shaft, each shaft once, in natural order; contacts 1, 2, ... 10 inside
        shafts = [r["Electrode"] for r in rows]
        blocks = list(dict.fromkeys(shafts))
        assert shafts == [s for s in blocks for _ in range(shafts.count(s))]
        assert blocks == sorted(blocks, key=rf.natural_key)
        assert len(blocks) == mine["channel"].map_elements(
            lambda c: rf.split_contact_name(c)[0], return_dtype=pl.String).n_unique()
        for shaft in blocks:
            numbers = [int(r["Number"]) for r in rows if r["Electrode"] == shaft]
            assert numbers == sorted(numbers)
        # threshold: the flag follows the fold's threshold; labels match the run's
        scored = {r["channel"]: r for r in own.iter_rows(named=True)}
        for r in rows:
            p = scored.get(r["Contact"])
            if p is None:  # not scored: a bad channel
                assert r["Bad channel"] == "bad" and r["Score"] == "–"
                seen_bad += 1
                continue
            assert (r["At or above threshold"] == "yes") == (p["score"] >= p["threshold"])
            assert (r["Clinicians' SOZ"] == "yes") == bool(p["soz"])
            assert (r["True onset zone"] == "yes") == bool(p["soz_true"])
        text = (out / patient_page_name(key)).read_text()
        assert re.search(r"\d+ at or above the threshold", text)
        assert _rows(page, "patient-metrics")[1]["Reference"] == "true onset zone"
    assert seen_bad > 0  # the phantom marks bad channels


def test_regenerate_one_patient_and_errors(report_run: tuple[Path, str], tmp_path: Path
                                           ) -> None:
    store, run_id = report_run
    out = store / "results" / "reports" / run_id
    key = sorted(pl.read_parquet(store / "results" / "predictions" / f"run={run_id}" /
                                 "part.parquet")["key"].unique())[0]
    page = out / patient_page_name(key)
    page.unlink()
    before = (out / "index.html").stat().st_mtime_ns
    assert write_run_report(store, run_id, patient=key.split("/")[1]) == page
    assert page.exists() and (out / "index.html").stat().st_mtime_ns == before
    assert write_run_report(store, run_id) == out / "index.html"
    with pytest.raises(KeyError, match="no patient 'nobody'"):
        write_run_report(store, run_id, patient="nobody")
    with pytest.raises(FileNotFoundError, match="no run 'missing-run'"):
        write_run_report(store, "missing-run")


def test_calibration_bins_and_diagonal_only_for_probabilities() -> None:
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1], bool)
    mean, share, count = rf.calibration_points(values, y, n_bins=4)
    np.testing.assert_allclose(mean, [0.15, 0.35, 0.65, 0.85])
    np.testing.assert_allclose(share, [0.0, 0.5, 0.5, 1.0])
    assert count.tolist() == [2, 2, 2, 2]
    for is_probability in (True, False):
        fig = rf.calibration_figure(values, y, is_probability=is_probability,
                                    colour_label="x")
        legend_box = fig.axes[0].get_legend()
        assert legend_box is not None
        labels = [t.get_text() for t in legend_box.get_texts()]
        assert ("perfect calibration" in labels) == is_probability
        rf.figure_data_uri(fig)
    # a run without a single labelled contact still gets a (empty) figure
    assert rf.calibration_points(np.array([]), np.array([], bool))[2].size == 0
