"""One registry of models, one estimator protocol, typed configs, safe checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sozstore.models.configs import ConfigError
from sozstore.models.estimator import CohortData, Estimator
from sozstore.models.inputs import subject_keys
from sozstore.models.registry import REGISTRY, build_estimator, parse_model_config

#: Configs small enough to fit every model on the six-patient phantom in seconds.
TINY: dict[str, dict[str, Any]] = {
    "sozformer": {"model": {"d_model": 16, "n_heads": 2, "n_temporal_layers": 1,
                            "n_spatial_layers": 1, "dim_feedforward": 16},
                  "epochs": 1, "n_clips": 4, "max_batches_per_epoch": 2,
                  "pretrain_epochs": 1, "threads": 1},
    "dcgru": {"model": {"hidden": 8, "n_layers": 1}, "epochs": 1, "n_steps": 3,
              "max_batches_per_epoch": 2, "pretrain_epochs": 1, "threads": 1},
    "szloc": {"model": {"d_model": 16, "n_heads": 2, "dim_feedforward": 16}, "epochs": 1,
              "batch_size": 2, "max_batches_per_epoch": 1, "threads": 1},
    "stack": {"bases": ["spike_rate", "ei", "svm"], "inner_folds": 2},
    "fragility": {"n_angles": 7, "n_eig_angles": 1},
}


def test_zoo_order_and_kinds() -> None:
    assert tuple(REGISTRY) == ("sozformer", "dcgru", "szloc", "svm", "stack", "spike_rate",
                               "hfo_rate", "ei", "fragility")
    assert [n for n, s in REGISTRY.items() if s.learned] == ["sozformer", "dcgru", "szloc",
                                                              "svm", "stack"]
    for name, spec in REGISTRY.items():
        assert spec.name == name and spec.description and "\n" not in spec.description


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_model_builds_an_estimator_whose_params_are_its_config(name: str) -> None:
    spec = REGISTRY[name]
    for raw in ({}, spec.demo, spec.full, TINY.get(name, {})):
        config = spec.parse(raw)
        estimator = spec.build(config)
        assert isinstance(estimator, Estimator)
        params = estimator.get_params()
        assert params == config.model_dump(mode="json")
        # plain JSON that validates back to the same config
        assert spec.parse(json.loads(json.dumps(params))) == config
    assert set(spec.json_schema()["properties"]) == set(spec.config_class.model_fields)


def test_per_model_defaults_are_written_in_their_config() -> None:
    dcgru = parse_model_config("dcgru", {"model": {"hidden": 16}})
    assert dcgru.lr == 1e-3 and dcgru.model == {"readout": "mean", "hidden": 16}
    szloc = parse_model_config("szloc", None)
    assert szloc.lr == 1e-4 and szloc.batch_size == 4
    assert parse_model_config("sozformer", None).lr == 3e-4


@pytest.mark.parametrize("name, raw, message", [
    ("sozformer", {"lrr": 1e-3},
     "config.json: unknown hyper-parameter 'lrr' for model sozformer (did you mean 'lr'?)"),
    ("dcgru", {"model": {"hiden": 8}},
     "config.json: unknown hyper-parameter 'model.hiden' for model dcgru "
     "(did you mean 'model.hidden'?)"),
    ("svm", {"inner_folds": "three"}, "config.json: hyper-parameter 'inner_folds' for model "
                                      "svm: Input should be a valid integer"),
    ("stack", {"bases": ["spike_rate", "stack"]},
     "config.json: model stack: stack needs base models other than itself"),
    ("stack", {"base_configs": {"ei": {"pre": 5}}},
     "config.json: model stack: base_configs: unknown hyper-parameter 'pre' for model ei "
     "(did you mean 'pre_s'?)"),
    ("sozformer", {"search": {"model.dropuot": [0.1]}},
     "config.json: model sozformer: unknown search parameter 'model.dropuot' "
     "(did you mean 'model.dropout'?)"),
])
def test_a_bad_config_is_one_clear_line(name: str, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_model_config(name, raw, source="config.json")
    text = str(err.value)
    assert "\n" not in text and text.startswith(message), text
    assert isinstance(err.value, ValueError)


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model 'svn' \\(did you mean 'svm'\\?\\)"):
        build_estimator("svn")


def test_config_is_checked_before_any_data_is_read(tmp_path: Path) -> None:
    from sozstore.models.experiment import evaluate_model

    missing = tmp_path / "no-store"  # reading it would fail differently
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'epoch' for model"):
        evaluate_model(missing, "sozformer", config={"epoch": 3}, write=False)
    with pytest.raises(ConfigError, match="unknown model 'spike'"):
        evaluate_model(missing, "svm", comparator="spike", write=False)
    assert not missing.exists()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_model_round_trips_a_checkpoint(phantom_store: tuple[Path, Path],
                                              tmp_path: Path, name: str) -> None:
    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    data = CohortData.from_store(store)
    estimator = build_estimator(name, TINY.get(name))
    assert estimator.fit(data.subset(keys[:4]), data.subset(keys[4:5])) is estimator
    estimator.save(tmp_path / "fold0")
    loaded = type(estimator).load(tmp_path / "fold0.json")
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    test = data.subset(keys[5:])
    a, b = estimator.predict_proba(test), loaded.predict_proba(test)
    assert a.columns == ["key", "site", "subject", "channel", "score"]
    assert a.select("key", "channel").equals(b.select("key", "channel"))
    np.testing.assert_allclose(b["score"].to_numpy(), a["score"].to_numpy(), rtol=1e-6,
                               atol=1e-9)


def test_checkpoint_class_must_match_its_model(tmp_path: Path) -> None:
    from sozstore.models.checkpoint import load_checkpoint

    build_estimator("ei").save(tmp_path / "fold0")
    meta = json.loads((tmp_path / "fold0.json").read_text())
    meta["class"] = "SVMEstimator"
    (tmp_path / "fold0.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="names class SVMEstimator for model ei"):
        load_checkpoint(tmp_path / "fold0")
    with pytest.raises(TypeError):  # a spike-rate checkpoint is not an SVM
        build_estimator("spike_rate").save(tmp_path / "fold1")
        REGISTRY["svm"].build().load(tmp_path / "fold1")


def test_checkpoints_written_before_the_registry_still_load(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from sozstore.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    save_file({}, str(tmp_path / "old.safetensors"))
    (tmp_path / "old.json").write_text(json.dumps({
        "format": CHECKPOINT_FORMAT, "class": "EIBaseline",
        "params": {"pre_s": 10.0, "post_s": 20.0, "sfreq": 200.0}}))
    old = load_checkpoint(tmp_path / "old.json")
    assert old.name == "ei" and old.get_params() == {"pre_s": 10.0, "post_s": 20.0,
                                                     "sfreq": 200.0}
    (tmp_path / "old.json").write_text(json.dumps({
        "format": CHECKPOINT_FORMAT, "class": "RateBaseline", "params": {"rate": "hfo_rate"}}))
    assert load_checkpoint(tmp_path / "old.json").name == "hfo_rate"


def test_data_views_stay_inside_their_patients(phantom_store: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    store, _ = phantom_store
    keys = list(subject_keys(store)["key"])
    data = CohortData.from_store(store)
    train = data.subset(keys[:3])
    assert set(train.channels()["key"]) == set(keys[:3])
    assert "soz" not in train.features().columns
    assert train.features().height == train.channels().height
    with pytest.raises(KeyError, match="not part of this data"):
        train.subset(keys[3:4])
    both = train.union(data.subset(keys[3:4]))
    assert both.keys == tuple(keys[:4])
    assert {r.subject for r in both.recordings()} <= {k.split("/")[1] for k in keys[:4]}


def test_progress_goes_to_stderr_and_changes_nothing(phantom_store: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    from sozstore.models.experiment import evaluate_model

    store, _ = phantom_store
    quiet = evaluate_model(store, "spike_rate", cv=2, write=False, n_boot=0, comparator=None,
                           progress=False)
    capsys.readouterr()
    shown = evaluate_model(store, "spike_rate", cv=2, write=False, n_boot=0, comparator=None,
                           progress=True)
    out = capsys.readouterr()
    assert "spike_rate folds" in out.err and out.out == ""
    assert shown.predictions.drop("run_id").equals(quiet.predictions.drop("run_id"))
    data = CohortData.from_store(store)
    keys = list(subject_keys(store)["key"])
    est = build_estimator("sozformer", TINY["sozformer"])
    est.progress = True  # type: ignore[attr-defined]
    est.fit(data.subset(keys[:4]), data.subset(keys[4:5]))
    err = capsys.readouterr().err
    assert "sozformer epochs" in err and "val_auroc" in err
