"""Knobs of the phantom generator, its difficulty levels and the seeding scheme.

Every random choice of the generator comes from :func:`rng_for`, keyed by the cohort seed
and by names (site, subject, recording, purpose), so that adding a site, a subject or a
recording never changes the data of another one. Draws added for the difficulty knobs
come from generators derived with :func:`derive_rng`, which leaves the stream of the
generator they derive from untouched: at ``difficulty="easy"`` every knob is neutral and
the cohort is bit-identical to the generator before the knobs existed.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

__all__ = [
    "DIFFICULTY_LEVELS",
    "Difficulty",
    "DifficultyLevel",
    "PhantomConfig",
    "derive_rng",
    "rng_for",
]


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """Return an independent random generator for one purpose.

    Parameters
    ----------
    seed : int
        The cohort seed.
    *keys : str or int
        Names of the purpose, e.g. ``("hup", "HUP001", "ictal-1", "signal")``. Strings
        are hashed with CRC-32 (stable across processes, unlike :func:`hash`).

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator whose stream depends only on ``seed`` and ``keys``.
    """
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(key.encode("utf-8")) if isinstance(key, str) else int(key))
    return np.random.default_rng(np.random.SeedSequence(words))


def _words(keys: tuple[str | int, ...]) -> list[int]:
    return [zlib.crc32(k.encode("utf-8")) if isinstance(k, str) else int(k) for k in keys]


def derive_rng(rng: np.random.Generator, *keys: str | int) -> np.random.Generator:
    """Return a generator derived from ``rng``'s seed and ``keys``, without drawing from it.

    New kinds of random choices (the difficulty knobs) take their draws from a derived
    generator, so that the draws of ``rng`` itself, and with them every event planned
    before the knobs existed, stay exactly as they were.

    Parameters
    ----------
    rng : numpy.random.Generator
        A generator seeded from a :class:`numpy.random.SeedSequence` (as :func:`rng_for`
        makes them).
    *keys : str or int
        Names of the purpose, e.g. ``("traits",)``.

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator whose stream depends only on ``rng``'s seed and ``keys``
        (not on how much has been drawn from ``rng``).

    Raises
    ------
    TypeError
        If ``rng`` was not seeded from a seed sequence.
    """
    seq = rng.bit_generator.seed_seq
    if not isinstance(seq, np.random.SeedSequence):
        raise TypeError("derive_rng needs a generator seeded from a SeedSequence")
    raw_entropy = seq.entropy
    if raw_entropy is None:  # unreachable (None seeds get fresh entropy); narrows the type
        raise TypeError("derive_rng needs a generator seeded from a SeedSequence")
    entropy = ([int(e) for e in raw_entropy] if isinstance(raw_entropy, Sequence)
               else [int(raw_entropy)])
    words = [*entropy, *seq.spawn_key, 0x5EED, *_words(keys)]
    return np.random.default_rng(np.random.SeedSequence(words))


#: Names of the difficulty levels; ``moderate`` is the default.
DifficultyLevel = Literal["easy", "moderate", "hard"]


@dataclass(frozen=True)
class Difficulty:
    """Resolved difficulty knobs (see :class:`PhantomConfig` for their meaning).

    Every attribute is concrete; :attr:`PhantomConfig.physiology` builds one from a
    level of :data:`DIFFICULTY_LEVELS` and the knobs given explicitly.
    """

    soz_spike_rate_sd: float
    quiet_soz_probability: float
    quiet_soz_factor: tuple[float, float]
    irritative_zone_probability: float
    irritative_rate_factor: tuple[float, float]
    propagation_fraction: float
    spike_snr: tuple[float, float]
    spike_width_s: tuple[float, float]
    sharp_transient_rate: float
    spindle_rate: float
    physiological_ripple_probability: float
    soz_without_hfo_probability: float
    fast_ripple_non_soz_probability: float
    hfo_snr: tuple[float, float]
    hfo_rate_cap_hz: float
    ecg_leak_probability: float
    ecg_leak_gain: tuple[float, float]
    common_reference_probability: float
    average_reference_probability: float
    high_rate_probability: float
    hypersynchronous_onset_probability: float
    fast_spread_probability: float


#: Calibrated difficulty levels. ``easy`` is the generator's original physiology (every
#: knob neutral: bit-identical cohorts); ``moderate`` (the default) is calibrated so that
#: a plain spike-rate ranking scores a mean per-patient AUROC of 0.75-0.90 against the
#: true onset zone (measurements in docs/etl.md); ``hard`` overlaps the zones further.
DIFFICULTY_LEVELS: dict[str, Difficulty] = {
    "easy": Difficulty(
        soz_spike_rate_sd=0.0,
        quiet_soz_probability=0.0,
        quiet_soz_factor=(1.0, 1.0),
        irritative_zone_probability=0.0,
        irritative_rate_factor=(0.0, 0.0),
        propagation_fraction=0.0,
        spike_snr=(1.0, 1.0),
        spike_width_s=(0.02, 0.07),
        sharp_transient_rate=0.0,
        spindle_rate=0.0,
        physiological_ripple_probability=0.0,
        soz_without_hfo_probability=0.0,
        fast_ripple_non_soz_probability=0.0,
        hfo_snr=(1.0, 1.0),
        hfo_rate_cap_hz=1000.0,
        ecg_leak_probability=0.0,
        ecg_leak_gain=(0.0, 0.0),
        common_reference_probability=0.0,
        average_reference_probability=0.0,
        high_rate_probability=0.0,
        hypersynchronous_onset_probability=0.0,
        fast_spread_probability=0.0,
    ),
    "moderate": Difficulty(
        soz_spike_rate_sd=0.5,
        quiet_soz_probability=0.2,
        quiet_soz_factor=(0.15, 0.4),
        irritative_zone_probability=0.9,
        irritative_rate_factor=(0.8, 2.0),
        propagation_fraction=0.15,
        spike_snr=(0.5, 1.2),
        spike_width_s=(0.015, 0.1),
        sharp_transient_rate=1.0,
        spindle_rate=3.0,
        physiological_ripple_probability=0.3,
        soz_without_hfo_probability=0.4,
        fast_ripple_non_soz_probability=0.1,
        hfo_snr=(0.6, 1.0),
        hfo_rate_cap_hz=0.0,
        ecg_leak_probability=0.15,
        ecg_leak_gain=(0.3, 1.5),
        common_reference_probability=0.3,
        average_reference_probability=0.2,
        high_rate_probability=0.35,
        hypersynchronous_onset_probability=0.35,
        fast_spread_probability=0.3,
    ),
    "hard": Difficulty(
        soz_spike_rate_sd=0.7,
        quiet_soz_probability=0.35,
        quiet_soz_factor=(0.1, 0.35),
        irritative_zone_probability=1.0,
        irritative_rate_factor=(1.0, 2.5),
        propagation_fraction=0.25,
        spike_snr=(0.4, 1.1),
        spike_width_s=(0.015, 0.12),
        sharp_transient_rate=1.5,
        spindle_rate=4.0,
        physiological_ripple_probability=0.4,
        soz_without_hfo_probability=0.5,
        fast_ripple_non_soz_probability=0.15,
        hfo_snr=(0.5, 1.0),
        hfo_rate_cap_hz=0.0,
        ecg_leak_probability=0.3,
        ecg_leak_gain=(0.5, 2.0),
        common_reference_probability=0.35,
        average_reference_probability=0.3,
        high_rate_probability=0.5,
        hypersynchronous_onset_probability=0.45,
        fast_spread_probability=0.5,
    ),
}

_KNOBS = tuple(f.name for f in fields(Difficulty))


@dataclass(frozen=True)
class PhantomConfig:
    """All knobs of the synthetic cohort, with realistic defaults.

    Rates are events per minute per channel; amplitudes of transients are multiples of
    the channel's background standard deviation (spikes, seizures) or of the background
    RMS in the event's own band (HFOs), so that they stay detectable whatever the
    channel's gain.

    Parameters
    ----------
    ictal_duration_s : float
        Length of an ictal run (HUP, multicenter, CHUL ``crise``). HUP places the
        seizure onset at ``hup_onset_s`` when the run is long enough.
    interictal_duration_s : float
        Length of a HUP interictal run.
    chul_interictal_hours : float
        Length of the long CHUL interictal recording, in hours.
    ictal_runs, interictal_runs : tuple of int
        Inclusive ``(min, max)`` number of runs per subject.
    seizure_duration_s : tuple of float
        Range of seizure durations; shrunk to fit short runs.
    hup_onset_s : float
        HUP clips are cut so that ``sz onset`` is at 120.0 s (a real label-leak hazard).
    electrodes_per_subject, contacts_per_electrode : tuple of int
        Implant size ranges (ECoG grids get twice the contacts).
    background_uv : tuple of float
        Range of the per-contact background standard deviation in microvolts.
    background_exponent : float
        Spectral exponent of the aperiodic background (power ~ 1/f**exponent), 0 < x <= 2.
    spike_rate_soz, spike_rate_non_soz : float
        Interictal spike rates (per minute) in true-SOZ contacts and elsewhere.
    spike_amplitude : tuple of float
        Spike amplitude range, in background SDs.
    ripple_rate_soz, ripple_rate_non_soz, fast_ripple_rate_soz, fast_ripple_rate_non_soz : float
        HFO rates per minute. Fast ripples are planted only when the sampling rate allows
        (an oscillation of at least 250 Hz below 0.4 x sfreq).
    hfo_amplitude : tuple of float
        HFO amplitude range, in multiples of the background RMS in the HFO's band. The
        default makes every planted burst an HFO by Staba's definition (at least three
        cycles above a 3-ms RMS threshold of ~4.4 band SDs); with 4-8 x, 60 % of the
        Hann-windowed bursts never reach it and would be truth no detector can find.
    spread_delay_s : float
        Seizure recruitment delay per contact step away from the onset zone.
    lvfa_duration_s : tuple of float
        Duration range of the low-voltage fast activity at seizure onset.
    ictal_amplitude : tuple of float
        Peak amplitude range of the rhythmic ictal discharge, in background SDs.
    postictal_s : float
        Time constant of the post-ictal suppression.
    mains_amplitude_uv : float
        Typical mains interference amplitude (site's 50/60 Hz plus a harmonic).
    artifact_rate_per_min : float
        Rate of artifacts (movement bursts on all channels, electrode pops on one).
    n_flat_channels, n_noisy_channels : int
        Bad contacts per subject (the same contacts in every run, marked bad in metadata).
    label_agreement : float
        Fraction of true-SOZ contacts that the clinicians' labels include.
    label_false_positives : tuple of int
        Range of labelled SOZ contacts outside the true onset zone.
    seizure_free_probability : float
        Probability that a (operated) subject is seizure free (Engel 1).
    n_jobs : int
        Worker processes used to render signal files: ``1`` renders in-process, ``0``
        (default) uses up to 4 of the available cores when there is enough work to repay
        the start-up of the workers. The data do not depend on it.
    block_s : float
        Length of the blocks in which signals are synthesised and written; bounds memory.
    difficulty : {"easy", "moderate", "hard"}
        Level of :data:`DIFFICULTY_LEVELS` that sets every difficulty knob below left at
        ``None``. ``easy`` reproduces the original physiology exactly (the onset zone
        carries ~8x the spikes and HFOs of other contacts); ``moderate`` (default) and
        ``hard`` make the physiology varied and overlapping so that no single tell
        separates the onset zone. The resolved values are :attr:`physiology`.

    Other Parameters
    ----------------
    soz_spike_rate_sd : float, optional
        Log-normal SD of a per-patient factor on the onset zone's spike rate.
    quiet_soz_probability : float, optional
        Probability that a patient's onset zone is "quiet": its spike rate is multiplied
        by a factor drawn from ``quiet_soz_factor``.
    quiet_soz_factor : tuple of float, optional
        Range of that factor.
    irritative_zone_probability : float, optional
        Probability that a patient has an irritative zone: a run of contacts on other
        shafts (or far along the onset shaft) spiking at ``irritative_rate_factor`` x
        ``spike_rate_soz``.
    irritative_rate_factor : tuple of float, optional
        Range of that factor (one draw per patient, jittered per contact).
    propagation_fraction : float, optional
        Fraction of onset-zone spikes that propagate to the patient's network contacts
        (delayed 10-60 ms, attenuated to 0.2-0.7; truth kind ``propagated``).
    spike_snr : tuple of float, optional
        Range of a per-contact factor on spike amplitudes (log-uniform): below ~0.7 most
        spikes sink into the background.
    spike_width_s : tuple of float, optional
        Range of the spikes' sharp-component duration (morphology).
    sharp_transient_rate : float, optional
        Mean rate (per minute per contact, log-normal across contacts) of benign sharp
        transients: spike-like, without an after-going slow wave.
    spindle_rate : float, optional
        Sleep spindles (11-16 Hz, 0.5-2 s) per minute on the shafts that carry them
        (about half of the shafts).
    physiological_ripple_probability : float, optional
        Fraction of non-onset contacts with physiological ripples (80-150 Hz) at rates
        comparable to the onset zone's.
    soz_without_hfo_probability : float, optional
        Fraction of onset-zone contacts without pathological HFOs.
    fast_ripple_non_soz_probability : float, optional
        Fraction of non-onset contacts with fast ripples at onset-zone rates.
    hfo_snr : tuple of float, optional
        Range of a per-contact factor on HFO amplitudes (log-uniform).
    hfo_rate_cap_hz : float, optional
        HFOs are planted up to 0.4 x the sampling rate, capped at 0.4 x this value when
        it is positive (``easy``: 1000, the original limit for a store at 1 kHz; other
        levels: 0, the source rate: fast ripples up to 500 Hz at 2 kHz sources).
    ecg_leak_probability : float, optional
        Probability per shaft that the ECG leaks into its contacts (a QRS train).
    ecg_leak_gain : tuple of float, optional
        Range of the leaked R-peak amplitude, in background SDs of the contact.
    common_reference_probability, average_reference_probability : float, optional
        Probability that a subject's recordings are referenced to an active reference
        contact (one 1/f signal common to every contact) or to the common average; the
        rest are ideally referenced.
    high_rate_probability : float, optional
        Probability that a CHUL subject records at 2048 Hz instead of 1024 Hz, and a
        multicenter JHH/NIH subject at 2000 Hz instead of 1000 Hz (HUP keeps 512/1024).
    hypersynchronous_onset_probability : float, optional
        Probability that a patient's seizures start with periodic high-amplitude spikes
        (hypersynchronous onset) instead of low-voltage fast activity.
    fast_spread_probability : float, optional
        Probability that a patient's seizures recruit neighbours fast (a quarter of
        ``spread_delay_s``).
    """

    ictal_duration_s: float = 180.0
    interictal_duration_s: float = 300.0
    chul_interictal_hours: float = 1.0
    ictal_runs: tuple[int, int] = (2, 2)
    interictal_runs: tuple[int, int] = (1, 1)
    seizure_duration_s: tuple[float, float] = (30.0, 70.0)
    hup_onset_s: float = 120.0
    electrodes_per_subject: tuple[int, int] = (6, 10)
    contacts_per_electrode: tuple[int, int] = (8, 12)
    background_uv: tuple[float, float] = (25.0, 70.0)
    background_exponent: float = 1.8
    spike_rate_soz: float = 8.0
    spike_rate_non_soz: float = 1.0
    spike_amplitude: tuple[float, float] = (3.5, 7.0)
    ripple_rate_soz: float = 6.0
    ripple_rate_non_soz: float = 0.8
    fast_ripple_rate_soz: float = 3.0
    fast_ripple_rate_non_soz: float = 0.2
    hfo_amplitude: tuple[float, float] = (8.0, 12.0)
    spread_delay_s: float = 1.5
    lvfa_duration_s: tuple[float, float] = (3.0, 8.0)
    ictal_amplitude: tuple[float, float] = (3.0, 6.0)
    postictal_s: float = 20.0
    mains_amplitude_uv: float = 8.0
    artifact_rate_per_min: float = 0.3
    n_flat_channels: int = 1
    n_noisy_channels: int = 1
    label_agreement: float = 0.8
    label_false_positives: tuple[int, int] = (1, 2)
    seizure_free_probability: float = 0.6
    n_jobs: int = 0
    block_s: float = 4.0
    difficulty: DifficultyLevel = "moderate"
    soz_spike_rate_sd: float | None = None
    quiet_soz_probability: float | None = None
    quiet_soz_factor: tuple[float, float] | None = None
    irritative_zone_probability: float | None = None
    irritative_rate_factor: tuple[float, float] | None = None
    propagation_fraction: float | None = None
    spike_snr: tuple[float, float] | None = None
    spike_width_s: tuple[float, float] | None = None
    sharp_transient_rate: float | None = None
    spindle_rate: float | None = None
    physiological_ripple_probability: float | None = None
    soz_without_hfo_probability: float | None = None
    fast_ripple_non_soz_probability: float | None = None
    hfo_snr: tuple[float, float] | None = None
    hfo_rate_cap_hz: float | None = None
    ecg_leak_probability: float | None = None
    ecg_leak_gain: tuple[float, float] | None = None
    common_reference_probability: float | None = None
    average_reference_probability: float | None = None
    high_rate_probability: float | None = None
    hypersynchronous_onset_probability: float | None = None
    fast_spread_probability: float | None = None

    @classmethod
    def at(cls, difficulty: DifficultyLevel, **knobs: Any) -> PhantomConfig:
        """Return a configuration at a difficulty level, with any knob overridden.

        Parameters
        ----------
        difficulty : {"easy", "moderate", "hard"}
            The level.
        **knobs
            Other fields (e.g. ``interictal_duration_s=60.0`` or ``spike_snr=(1, 1)``).

        Returns
        -------
        PhantomConfig
            ``PhantomConfig(difficulty=difficulty, **knobs)``.
        """
        return cls(difficulty=difficulty, **knobs)

    @functools.cached_property
    def physiology(self) -> Difficulty:
        """The difficulty knobs resolved: the level's values, overridden by explicit ones.

        Unset knobs stay ``None`` in the fields, so ``dataclasses.replace(cfg,
        difficulty="hard")`` moves every unset knob to the new level.
        """
        level = DIFFICULTY_LEVELS[self.difficulty]
        given = {k: getattr(self, k) for k in _KNOBS if getattr(self, k) is not None}
        return dataclasses.replace(level, **given) if given else level

    def __post_init__(self) -> None:
        """Validate the knobs (fail early with a clear message, not deep in a writer)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"{f.name} must be an increasing (min, max) pair")
                if value[0] < 0:
                    raise ValueError(f"{f.name} must be non-negative")
            elif isinstance(value, (int, float)) and value < 0:
                raise ValueError(f"{f.name} must be non-negative, got {value}")
        if not 0.0 < self.background_exponent <= 2.0:
            raise ValueError("background_exponent must be in (0, 2]")
        if not 0.0 <= self.label_agreement <= 1.0:
            raise ValueError("label_agreement must be in [0, 1]")
        if not 0.0 <= self.seizure_free_probability <= 1.0:
            raise ValueError("seizure_free_probability must be in [0, 1]")
        if self.ictal_duration_s < 10.0:
            raise ValueError("ictal_duration_s must be at least 10 s (room for a seizure)")
        if min(self.interictal_duration_s, self.chul_interictal_hours * 3600.0) < 1.0:
            raise ValueError("interictal durations must be at least 1 s")
        if self.electrodes_per_subject[0] < 1 or self.contacts_per_electrode[0] < 4:
            raise ValueError("need at least 1 electrode and 4 contacts per electrode")
        if self.ictal_runs[0] < 1:
            raise ValueError("ictal_runs must be at least 1 (every subject has a seizure)")
        if self.block_s <= 0.0:
            raise ValueError("block_s must be > 0")
        if self.difficulty not in DIFFICULTY_LEVELS:
            raise ValueError(
                f"difficulty must be one of {sorted(DIFFICULTY_LEVELS)}, got {self.difficulty!r}"
            )
        phys = self.physiology
        fractions = [k for k in _KNOBS if k.endswith("_probability")] + ["propagation_fraction"]
        for name in fractions:
            if not 0.0 <= getattr(phys, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if phys.common_reference_probability + phys.average_reference_probability > 1.0:
            raise ValueError("common + average reference probabilities must not exceed 1")
        if phys.spike_snr[0] <= 0.0 or phys.hfo_snr[0] <= 0.0:
            raise ValueError("spike_snr and hfo_snr must be positive")
        if phys.spike_width_s[0] < 0.005:
            raise ValueError("spike_width_s must be at least 5 ms")
