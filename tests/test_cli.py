"""The command line as a user meets it: every mistake is one line and exit code 2, nothing
prints a traceback, options mean the same in every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from sozstore import cli
from sozstore.console import console, error


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("argv", [
    ["train", "spike_rate"],
    ["query", "cohort_summary"],
    ["features"],
    ["evaluate", "--run", "r1"],
    ["predict", "--run", "r1", "--recording", "x"],
    ["report", "--run", "r1"],
    ["report", "generalisation"],
])
def test_a_missing_store_is_one_line(argv: list[str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-store-here"
    code, _, err = run_cli([*argv, "--store", str(missing)], capsys)
    assert code == 2
    assert_one_line_error(err, str(missing), "no sozstore store")


@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "spike_rate", "--store", "s", "--cv", "1"], "--cv"),
    (["train", "spike_rate", "--store", "s", "--shuffle-scope", "site"], "--shuffle-scope"),
    (["query", "SELECT 1", "--store", "s", "--format", "xml"], "--format"),
    (["train", "spike_rate", "--store", "s", "--bogus"], "--bogus"),
    (["train", "spike_rate"], "--store"),
    (["evaluate", "--store", "s"], "--run"),
    (["train", "sozformr", "--store", "s"], "did you mean 'sozformer'"),
])
def test_usage_errors_are_one_line(argv: list[str], needle: str,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOZSTORE_STORE", raising=False)
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert_one_line_error(err, needle)


def test_store_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOZSTORE_STORE", str(tmp_path / "elsewhere"))
    code, _, err = run_cli(["train", "spike_rate"], capsys)
    assert code == 2
    assert_one_line_error(err, "elsewhere")


def test_error_text_is_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    error("site.toml: unknown key [layout] bad_column")
    assert "[layout]" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["-v", "--verbose", "-q", "--quiet"])
def test_verbosity_after_the_command(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["query", "--list", flag], capsys)
    assert code == 0, err
    assert "cohort_summary" in out
    code, out, _ = run_cli([flag, "query", "--list"], capsys)
    assert code == 0 and "cohort_summary" in out


def test_help_shows_the_choices(capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the help box: one option per line
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0
    assert "cohort|patient" in out and "sozformer" in out and "fragility" in out
    _, out, _ = run_cli(["evaluate", "--help"], capsys)
    assert "table|csv|json|parquet" in out and "clinician|truth|resected" in out


def test_an_unexpected_error_is_one_line_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something inside broke")

    import sozstore.phantom

    monkeypatch.setattr(sozstore.phantom, "generate_cohort", broken)
    code, _, err = run_cli(["phantom", str(tmp_path / "c")], capsys)
    assert code == 1
    assert_one_line_error(err, "RuntimeError", "something inside broke", "-v")


# ----------------------------------------------------------------- with a store


def test_query_mistakes_name_the_closest_thing(phantom_store: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = phantom_store
    code, _, err = run_cli(["query", "cohort_sumary", "--store", str(store)], capsys)
    assert code == 2
    assert_one_line_error(err, "cohort_sumary", "did you mean 'cohort_summary'")
    code, _, err = run_cli(["query", "SELECT * FROM recordingz", "--store", str(store)], capsys)
    assert code == 2
    assert_one_line_error(err, "recordingz", "Did you mean")  # DuckDB's own hint, kept


def test_an_unknown_run_is_one_line(phantom_store: tuple[Path, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = phantom_store
    for argv in (["predict", "--run", "nope", "--recording", "x"],
                 ["evaluate", "--run", "nope"], ["report", "--run", "nope"]):
        code, _, err = run_cli([*argv, "--store", str(store)], capsys)
        assert code == 2
        assert_one_line_error(err, "no run 'nope'")


def test_query_never_folds_an_id(phantom_store: tuple[Path, Path],
                                 capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = phantom_store
    monkeypatch.setattr(console, "width", 70)
    code, out, err = run_cli(["query", "SELECT recording_id, site, subject, duration_s, "
                                       "sfreq, n_channels FROM recordings", "--store",
                              str(store)], capsys)
    assert code == 0, err
    import polars as pl

    from sozstore.store.duck import run_query

    ids = pl.from_arrow(run_query(store, "SELECT recording_id FROM recordings"))
    assert isinstance(ids, pl.DataFrame)
    for rid in ids["recording_id"]:
        assert rid in out  # whole, on one line


def test_config_schema_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sozstore.etl.config import site_config_json_schema

    code, out, _ = run_cli(["config", "schema"], capsys)
    assert code == 0 and json.loads(out) == site_config_json_schema()
    code, out, _ = run_cli(["config", "schema", "--model", "sozformer"], capsys)
    assert code == 0 and "lr" in json.loads(out)["properties"]
    shipped = Path(__file__).parents[1] / "src" / "sozstore" / "sites" / "ds004100.toml"
    code, out, err = run_cli(["config", "check", str(shipped)], capsys)
    assert code == 0, err
    bad = tmp_path / "sozformer.json"
    bad.write_text(json.dumps({"lrr": 0.01}))
    for argv in (["config", "check", str(bad), "--model", "sozformer"],
                 ["train", "sozformer", "--store", str(tmp_path), "--config", str(bad)]):
        (tmp_path / "catalog").mkdir(exist_ok=True)  # a store, so that the config is what fails
        code, _, err = run_cli(argv, capsys)
        assert code == 2
        assert_one_line_error(err, str(bad), "lrr", "did you mean")
