"""Knobs of the phantom generator and the seeding scheme.

Every random choice of the generator comes from :func:`rng_for`, keyed by the cohort seed
and by names (site, subject, recording, purpose), so that adding a site, a subject or a
recording never changes the data of another one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["PhantomConfig", "rng_for"]


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
