"""The phantom's difficulty levels: knobs, seeding, new physiology and the calibration of
the default level (a plain spike-rate ranking must not give the onset zone away)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from synth import CALIBRATION

from sozstore.phantom import PhantomConfig
from sozstore.phantom.config import DIFFICULTY_LEVELS, Difficulty, derive_rng, rng_for
from sozstore.phantom.physiology import (
    KIND_CODES,
    SignalSimulator,
    SignalSpec,
    TransientTable,
    sharp_transient_waveform,
)
from sozstore.phantom.plan import (
    ChannelDef,
    SubjectTraits,
    plan_signal,
    plan_subject,
)

STEMS = ["A'", "B'", "C'", "T'", "O'"]


def _subject(cfg: PhantomConfig, seed: int = 0, subject: str = "s1"):
    rng = rng_for(seed, "test", subject, "subject")
    return plan_subject(rng, site="test", subject=subject, stems=STEMS,
                        modality=["seeg"] * len(STEMS), cfg=cfg, locale="fr")


def _channels(sp) -> list[ChannelDef]:
    return [ChannelDef(f"{s}{n}", "contact", (s, n), "seeg") for s, n in sp.contacts]


# ----------------------------------------------------------------------------------------
# knobs and levels
# ----------------------------------------------------------------------------------------


def test_levels_differ_and_easy_is_neutral() -> None:
    easy, moderate, hard = (DIFFICULTY_LEVELS[k] for k in ("easy", "moderate", "hard"))
    assert PhantomConfig().difficulty == "moderate"
    assert PhantomConfig().physiology == moderate
    assert easy != moderate != hard != easy
    # every probability grows from easy (0: the original physiology) to hard
    for name in (f.name for f in dataclasses.fields(Difficulty)):
        if name.endswith("_probability") or name in ("propagation_fraction",
                                                      "sharp_transient_rate",
                                                      "spindle_rate", "soz_spike_rate_sd"):
            assert getattr(easy, name) == 0.0, name
            assert 0.0 < getattr(moderate, name) <= getattr(hard, name), name
    assert easy.spike_snr == easy.hfo_snr == (1.0, 1.0)
    assert hard.spike_snr[0] < moderate.spike_snr[0] < 1.0
    assert easy.hfo_rate_cap_hz == 1000.0 and moderate.hfo_rate_cap_hz == 0.0


def test_explicit_knobs_override_the_level_and_replace_moves_the_rest() -> None:
    cfg = PhantomConfig(difficulty="hard", spike_snr=(1.0, 1.0))
    assert cfg.physiology.spike_snr == (1.0, 1.0)
    assert cfg.physiology.irritative_zone_probability == (
        DIFFICULTY_LEVELS["hard"].irritative_zone_probability)
    assert PhantomConfig.at("hard", spike_snr=(1.0, 1.0)) == cfg
    easy = dataclasses.replace(cfg, difficulty="easy")
    assert easy.physiology == dataclasses.replace(DIFFICULTY_LEVELS["easy"],
                                                  spike_snr=(1.0, 1.0))


@pytest.mark.parametrize("bad", [
    {"difficulty": "impossible"},
    {"quiet_soz_probability": 1.5},
    {"common_reference_probability": 0.7, "average_reference_probability": 0.6},
    {"spike_snr": (0.0, 1.0)},
    {"spike_width_s": (0.09, 0.02)},
])
def test_invalid_knobs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        PhantomConfig(**bad)


def test_derived_generators_ignore_what_was_drawn() -> None:
    rng = rng_for(3, "a", "b")
    first = derive_rng(rng, "x").random(4)
    rng.random(100)
    np.testing.assert_array_equal(derive_rng(rng, "x").random(4), first)
    assert not np.array_equal(derive_rng(rng, "y").random(4), first)
    assert not np.array_equal(derive_rng(rng_for(4, "a", "b"), "x").random(4), first)


# ----------------------------------------------------------------------------------------
# traits: seeded, independent of each other, neutral at easy
# ----------------------------------------------------------------------------------------


def test_traits_are_seeded_and_neutral_at_easy() -> None:
    assert _subject(PhantomConfig(difficulty="easy")).traits == SubjectTraits()
    hard = PhantomConfig(difficulty="hard")
    a, b = _subject(hard), _subject(hard)
    assert a.traits == b.traits and a.soz_true == b.soz_true
    assert _subject(hard, subject="s2").traits != a.traits
    # the traits draw from derived generators: the subject's own plan is unchanged
    easy = _subject(PhantomConfig(difficulty="easy"))
    assert (easy.soz_true, easy.soz_label, easy.sigma, easy.identity) == (
        a.soz_true, a.soz_label, a.sigma, a.identity)


def test_one_knob_moves_no_other_trait() -> None:
    base = _subject(PhantomConfig(difficulty="hard")).traits
    other = _subject(PhantomConfig(difficulty="hard", spindle_rate=0.5,
                                   ecg_leak_probability=0.9)).traits
    assert other.irritative == base.irritative and other.spike_gain == base.spike_gain
    assert other.network == base.network and other.hfo_gain == base.hfo_gain
    assert other.ecg_leak != base.ecg_leak


def test_traits_place_the_zones_where_they_belong() -> None:
    cfg = PhantomConfig(difficulty="hard", irritative_zone_probability=1.0,
                        physiological_ripple_probability=0.5,
                        soz_without_hfo_probability=0.5)
    for k in range(8):
        sp = _subject(cfg, seed=k)
        tr = sp.traits
        assert tr.irritative and not set(tr.irritative) & sp.soz_true
        assert not set(tr.network) & sp.soz_true
        assert not set(tr.physiological_ripples) & sp.soz_true
        assert tr.hfo_free <= sp.soz_true
        assert tr.reference in ("none", "common", "average")


def test_plan_signal_plants_the_new_physiology() -> None:
    cfg = PhantomConfig(difficulty="hard", irritative_zone_probability=1.0,
                        propagation_fraction=0.5, ecg_leak_probability=1.0,
                        hypersynchronous_onset_probability=1.0)
    sp = _subject(cfg, seed=1)
    chans = _channels(sp)
    planned = plan_signal(rng_for(1, "rec"), sp, chans, sfreq=2048.0, n_samples=2048 * 60,
                          mains_hz=50.0, cfg=cfg, seizure=(30.0, 45.0))
    kinds = {k for _, _, k in planned.spikes}
    assert kinds == {"spike", "propagated"}
    assert {k for *_, k in planned.transients} <= {"sharp", "spindle"}
    tr = planned.spec.transients
    assert (tr.kind == KIND_CODES["sharp"]).any()
    # the leaked ECG: one all-channel QRS event per beat, its gain row on whole shafts
    leak = (tr.channel == -1) & (tr.kind == KIND_CODES["qrs"])
    assert 40 <= leak.sum() <= 100
    assert planned.spec.seizure is not None
    assert planned.onset_pattern == "hypersync" == planned.spec.seizure.onset_pattern
    # fast ripples are planted up to 0.4 x the source rate (no 1 kHz store cap)
    fr = (tr.kind == KIND_CODES["fast_ripple"])
    if fr.any():
        assert tr.p1[fr].max() <= 500.0
    easy = plan_signal(rng_for(1, "rec"), _subject(PhantomConfig(difficulty="easy"), seed=1),
                       chans, sfreq=2048.0, n_samples=2048 * 60, mains_hz=50.0,
                       cfg=PhantomConfig(difficulty="easy"), seizure=(30.0, 45.0))
    assert not easy.transients and easy.spec.reference == "none"
    fr = easy.spec.transients.kind == KIND_CODES["fast_ripple"]
    assert easy.spec.transients.p1[fr].max() <= 400.0  # the original cap, kept at easy


# ----------------------------------------------------------------------------------------
# physiology: pure functions and the reference schemes
# ----------------------------------------------------------------------------------------


def test_sharp_transient_is_symmetric_without_slow_wave() -> None:
    t = np.linspace(-0.2, 0.2, 4001)
    w = sharp_transient_waveform(t, 100.0, 0.05)
    assert w.max() == pytest.approx(100.0)
    np.testing.assert_allclose(w, w[::-1], atol=1e-9)
    assert abs(sharp_transient_waveform(np.array([0.025]), 100.0, 0.05)[0]) < 1e-9
    assert abs(w[np.abs(t) > 0.15]).max() < 0.1  # nothing after the transient


def _spec(reference: str, reference_uv: float = 0.0) -> SignalSpec:
    n_ch = 6
    empty = TransientTable.build({})
    return SignalSpec(
        sfreq=1000.0, n_samples=4000, seed_words=(1, 2), role=("contact",) * n_ch,
        electrode=np.array([0, 0, 0, 1, 1, 1]), position=np.array([1, 2, 3, 1, 2, 3]),
        sigma=np.full(n_ch, 30.0), flat=np.zeros(n_ch, bool),
        noisy=np.array([False] * 5 + [True]), mains_hz=50.0, mains_amp=np.zeros((n_ch, 2)),
        transients=empty, seizure=None, dc=np.zeros((n_ch, 4)), reference=reference,
        reference_uv=reference_uv)


def test_references() -> None:
    ideal = SignalSimulator(_spec("none")).render(4000)
    common = SignalSimulator(_spec("common", 20.0)).render(4000)
    average = SignalSimulator(_spec("average")).render(4000)
    # the common reference is one signal subtracted from every contact
    diff = ideal[:5] - common[:5]
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), atol=1e-3)
    assert 10.0 < diff[0].std() < 30.0
    # the common average of the good contacts is zero; the noisy contact is left out of it
    np.testing.assert_allclose(average[:5].mean(axis=0), 0.0, atol=1e-3)
    with pytest.raises(ValueError):
        _spec("bipolar")


# ----------------------------------------------------------------------------------------
# calibration: per-patient spike-rate AUROC against the true onset zone
# ----------------------------------------------------------------------------------------

def spike_rate_auroc(out: Path, config: PhantomConfig | None = None, *,
                     subjects_per_site: int = 4, seed: int = 5) -> np.ndarray:
    """Per-patient AUROC of the ETL's spike rate vs truth on the cohort in ``out``
    (generated and ingested first when ``config`` is given)."""
    from synth import ingest_cohort

    from sozstore.models.experiment import truth_labels
    from sozstore.models.inputs import channel_table

    if config is not None:
        ingest_cohort(out, config, subjects_per_site=subjects_per_site, seed=seed)
    store = out / "store"
    table = channel_table(store).drop("soz").join(truth_labels(store, out / "truth"),
                                                  on=["site", "subject", "channel"])
    scores = []
    for _, patient in table.group_by("key", maintain_order=True):
        y = patient["soz_true"].fill_null(False).to_numpy()
        if 0 < y.sum() < y.size:
            scores.append(roc_auc_score(y, patient["spike_rate"].to_numpy()))
    return np.asarray(scores)


@pytest.mark.slow
def test_default_level_is_calibrated(calibrated_cohort: Path, tmp_path: Path) -> None:
    moderate = spike_rate_auroc(calibrated_cohort)
    print(f"\nmoderate spike-rate AUROC per patient: {np.round(moderate, 3)}")
    assert moderate.size >= 10
    assert 0.75 <= moderate.mean() <= 0.90
    assert moderate.std(ddof=1) >= 0.05  # patients differ: some onset zones are quiet
    easy = spike_rate_auroc(tmp_path / "easy", PhantomConfig(difficulty="easy", **CALIBRATION))
    print(f"easy spike-rate AUROC per patient: {np.round(easy, 3)}")
    assert easy.mean() >= 0.95  # the original physiology gives the onset zone away


def test_truth_tables_carry_the_new_columns(tmp_path: Path) -> None:
    from sozstore.phantom import generate_cohort

    cfg = PhantomConfig(difficulty="hard", ictal_duration_s=15.0, interictal_duration_s=10.0,
                        chul_interictal_hours=0.003, electrodes_per_subject=(2, 3),
                        contacts_per_electrode=(5, 6), ictal_runs=(1, 1), n_jobs=1)
    summary = generate_cohort(tmp_path, sites=("chul",), subjects_per_site=2, seed=1,
                              config=cfg)
    rec = pl.read_parquet(summary.truth["recordings"])
    assert set(rec["reference"]) <= {"none", "common", "average"}
    assert set(rec.filter(pl.col("task") == "ictal")["onset_pattern"]) <= {"lvfa", "hypersync"}
    assert rec.filter(pl.col("task") == "interictal")["onset_pattern"].null_count() == 2
    ch = pl.read_parquet(summary.truth["channels"])
    assert {"irritative", "ecg_leak"} <= set(ch.columns)
    assert not ch.filter(pl.col("irritative") & pl.col("soz_true")).height
    tr = pl.read_parquet(summary.truth["transients"])
    assert set(tr["kind"]) <= {"sharp", "spindle"} and tr.height > 0
