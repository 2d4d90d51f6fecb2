"""Planning: everything random about a subject and its recordings, decided up front.

A :class:`SubjectPlan` fixes the implant, the true seizure-onset zone, the clinicians'
(noisy) labels, the resection, the outcome, bad contacts, a fake identity and the
patient's :class:`SubjectTraits` (how far the physiology departs from the textbook onset
zone: irritative zone, quiet onset zone, spike and HFO SNRs, confounders, reference,
seizure onset pattern; all neutral at ``difficulty="easy"``). For each
recording, :func:`plan_signal` turns the subject plus a channel list into a
:class:`~sozstore.phantom.physiology.SignalSpec` with every transient and the seizure
already placed, so that the truth tables can be written without rendering a sample and
the rendering itself can run in any process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from sozstore.phantom.config import Difficulty, PhantomConfig, derive_rng
from sozstore.phantom.edf import edf_date
from sozstore.phantom.naming import canonical_channel, split_contact, truth_channel_type
from sozstore.phantom.physiology import (
    KIND_CODES,
    SeizureSpec,
    SignalSpec,
    TransientTable,
    background_spectrum,
    band_rms_fraction,
    poisson_times,
)

__all__ = [
    "ChannelDef",
    "Electrode",
    "Identity",
    "PlannedSignal",
    "SubjectPlan",
    "SubjectTraits",
    "fake_identity",
    "plan_signal",
    "plan_subject",
]

Contact = tuple[str, int]  # (stem as written in the files, contact number)

# Highest frequency planted for an HFO, relative to the sampling rate (capped at
# ``hfo_rate_cap_hz`` when that knob is positive: the easy level keeps the original cap at
# a 1 kHz store so that its cohorts stay bit-identical).
_HFO_NYQUIST_FRACTION = 0.4


@dataclass(frozen=True)
class Identity:
    """Fake identifying data of a subject (must never reach the store).

    Attributes
    ----------
    first_name, last_name : str
        ASCII names (EDF headers are ASCII).
    sex : str
        ``M`` or ``F``.
    birth_date : date
        Date of birth.
    hospital_number : str
        Medical record number written in the EDF patient field.
    ipp : str
        French "identifiant permanent du patient" (CHUL manifest only).
    """

    first_name: str
    last_name: str
    sex: str
    birth_date: date
    hospital_number: str
    ipp: str

    @property
    def full_name(self) -> str:
        """``First Last``."""
        return f"{self.first_name} {self.last_name}"

    def edf_patient(self, name: str | None = None) -> str:
        """EDF+ patient field ``code sex dd-MMM-yyyy First_Last``.

        Parameters
        ----------
        name : str, optional
            Name to write instead of the generated one (spaces become underscores, as
            EDF+ sub-fields cannot contain spaces).

        Returns
        -------
        str
            The field text.
        """
        birth = datetime(self.birth_date.year, self.birth_date.month, self.birth_date.day)
        who = "_".join((name or self.full_name).split()) or "X"
        return f"{self.hospital_number} {self.sex} {edf_date(birth)} {who}"


_FIRST = {
    "fr": (
        "Jean",
        "Marie",
        "Pierre",
        "Sophie",
        "Nicolas",
        "Isabelle",
        "Philippe",
        "Nathalie",
        "Michel",
        "Catherine",
        "Julien",
        "Camille",
        "Antoine",
        "Claire",
        "Thomas",
        "Helene",
    ),
    "us": (
        "John",
        "Mary",
        "Robert",
        "Linda",
        "Michael",
        "Susan",
        "David",
        "Karen",
        "James",
        "Lisa",
        "William",
        "Nancy",
        "Daniel",
        "Betty",
        "Mark",
        "Sandra",
    ),
}
_LAST = {
    "fr": (
        "Dupont",
        "Martin",
        "Bernard",
        "Dubois",
        "Durand",
        "Leroy",
        "Moreau",
        "Lefebvre",
        "Garnier",
        "Fournier",
        "Girard",
        "Rousseau",
        "Chevalier",
        "Mercier",
        "Blanchard",
        "Lemaire",
    ),
    "us": (
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Miller",
        "Davis",
        "Wilson",
        "Anderson",
        "Taylor",
        "Moore",
        "Jackson",
        "Harris",
        "Clark",
        "Lewis",
        "Walker",
        "Young",
    ),
}


def fake_identity(rng: np.random.Generator, locale: str = "us") -> Identity:
    """Draw a fake identity.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    locale : {"us", "fr"}
        Name pool.

    Returns
    -------
    Identity
        Names, sex, birth date (1950-2004), an 8-digit hospital number and a 10-digit IPP.
    """
    sex = "M" if rng.random() < 0.5 else "F"
    birth = date(1950, 1, 1) + timedelta(days=int(rng.integers(0, 55 * 365)))
    return Identity(
        first_name=str(rng.choice(_FIRST[locale])),
        last_name=str(rng.choice(_LAST[locale])),
        sex=sex,
        birth_date=birth,
        hospital_number=f"{int(rng.integers(10**7, 10**8))}",
        ipp=f"{int(rng.integers(10**9, 10**10))}",
    )


@dataclass(frozen=True)
class Electrode:
    """One implanted electrode (a depth shaft, a strip or a grid).

    Attributes
    ----------
    stem : str
        Name prefix as written in the files (``LA``, ``L'``, ``RAFa``, ``LG``).
    n_contacts : int
        Number of contacts, numbered from 1 (deepest for SEEG).
    modality : str
        ``seeg`` or ``ecog``.
    """

    stem: str
    n_contacts: int
    modality: str

    def contacts(self) -> list[Contact]:
        """All contacts of the electrode."""
        return [(self.stem, n) for n in range(1, self.n_contacts + 1)]


@dataclass(frozen=True)
class SubjectTraits:
    """How a patient's physiology departs from the textbook onset zone.

    The defaults are neutral (the ``easy`` physiology); :func:`plan_traits` draws them
    from the difficulty knobs. Contact maps leave out contacts at the neutral value.

    Attributes
    ----------
    soz_rate_factor : float
        Factor on the onset zone's spike rate (a quiet onset zone has a small one).
    quiet : bool
        Whether the onset zone is quiet (its factor includes ``quiet_soz_factor``).
    irritative : dict of Contact to float
        Irritative-zone contacts and their spike rate (per minute).
    network : dict of Contact to tuple of float
        Contacts that receive propagated onset-zone spikes: ``(attenuation, delay_s)``.
    spike_gain : dict of Contact to float
        Factor on the spike amplitudes of a contact (its SNR).
    sharp_rate : dict of Contact to float
        Rate of benign sharp transients per contact (per minute).
    spindle_gain : dict of Contact to float
        Spindle amplitude in background SDs, for contacts of spindle-bearing shafts.
    physiological_ripples : dict of Contact to float
        Non-onset contacts with physiological ripples, and their rate (per minute).
    hfo_free : frozenset of Contact
        Onset-zone contacts without pathological HFOs.
    fast_ripples_elsewhere : dict of Contact to float
        Non-onset contacts with fast ripples, and their rate (per minute).
    hfo_gain : dict of Contact to float
        Factor on the HFO amplitudes of a contact.
    ecg_leak : dict of Contact to float
        Signed leaked R-peak amplitude per contact, in background SDs.
    reference : str
        ``none``, ``common`` or ``average``.
    reference_gain : float
        SD of the common reference signal, in median background SDs.
    onset_pattern : str
        ``lvfa`` or ``hypersync``.
    fast_spread : bool
        Whether seizures recruit neighbours fast.
    """

    soz_rate_factor: float = 1.0
    quiet: bool = False
    irritative: dict[Contact, float] = field(default_factory=dict)
    network: dict[Contact, tuple[float, float]] = field(default_factory=dict)
    spike_gain: dict[Contact, float] = field(default_factory=dict)
    sharp_rate: dict[Contact, float] = field(default_factory=dict)
    spindle_gain: dict[Contact, float] = field(default_factory=dict)
    physiological_ripples: dict[Contact, float] = field(default_factory=dict)
    hfo_free: frozenset[Contact] = frozenset()
    fast_ripples_elsewhere: dict[Contact, float] = field(default_factory=dict)
    hfo_gain: dict[Contact, float] = field(default_factory=dict)
    ecg_leak: dict[Contact, float] = field(default_factory=dict)
    reference: str = "none"
    reference_gain: float = 0.0
    onset_pattern: str = "lvfa"
    fast_spread: bool = False


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """``n`` draws log-uniform in ``bounds`` (exactly 1.0 for the neutral (1, 1))."""
    lo, hi = bounds
    u = rng.random(n)  # drawn even when neutral: the stream does not depend on the knob
    if lo == hi:
        return np.full(n, float(lo))
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def plan_traits(
    rng: np.random.Generator,
    electrodes: list[Electrode],
    soz: set[Contact],
    phys: Difficulty,
    cfg: PhantomConfig,
) -> SubjectTraits:
    """Draw a patient's :class:`SubjectTraits` from the difficulty knobs.

    Each group of traits takes its own derived generator and draws the same numbers
    whatever the knobs' values (the knobs only decide what the draws are used for), so
    changing one knob moves no other trait of any patient.

    Parameters
    ----------
    rng : numpy.random.Generator
        The subject's random source; only generators derived from it are drawn from.
    electrodes : list of Electrode
        The implant.
    soz : set of Contact
        The true onset zone.
    phys : Difficulty
        Resolved difficulty knobs.
    cfg : PhantomConfig
        Knobs (base rates).

    Returns
    -------
    SubjectTraits
        The traits (neutral when every knob is).
    """
    contacts = [c for e in electrodes for c in e.contacts()]
    others = [c for c in contacts if c not in soz]
    n = len(contacts)

    # spikes: onset-zone rate, quiet onset zone, per-contact SNR
    g = derive_rng(rng, "traits", "spikes")
    z, q, qf = g.standard_normal(), g.random(), g.uniform(*phys.quiet_soz_factor)
    quiet = bool(q < phys.quiet_soz_probability)
    factor = float(np.exp(phys.soz_spike_rate_sd * z)) if phys.soz_spike_rate_sd > 0 else 1.0
    if quiet:
        factor *= float(qf)
    gains = _log_uniform(g, phys.spike_snr, n)
    spike_gain = {c: float(v) for c, v in zip(contacts, gains, strict=True) if v != 1.0}

    # irritative zone: a run of contacts on another shaft (a second one sometimes), or far
    # along the onset shaft when there is no other shaft
    g = derive_rng(rng, "traits", "irritative")
    has_zone = g.random() < phys.irritative_zone_probability
    level = cfg.spike_rate_soz * g.uniform(*phys.irritative_rate_factor)
    soz_stems = {s for s, _ in soz}
    shafts = [e for e in electrodes if e.stem not in soz_stems] or list(electrodes)
    order = g.permutation(len(shafts))
    n_zones = 2 if (g.random() < 0.3 and len(shafts) > 1) else 1
    irritative: dict[Contact, float] = {}
    for k in order[:n_zones]:
        e = shafts[int(k)]
        run = int(g.integers(3, max(3, min(8, e.n_contacts)) + 1))
        start = int(g.integers(1, max(1, e.n_contacts - run + 1) + 1))
        jitter = g.uniform(0.7, 1.3, run)
        for m in range(run):
            c = (e.stem, start + m)
            if has_zone and c in contacts and c not in soz and _near(soz, c) >= 2:
                irritative[c] = float(level * jitter[m])

    # propagation network: onset-zone spikes reach some distant contacts, delayed and
    # attenuated (irritative contacts are more often part of the network)
    g = derive_rng(rng, "traits", "network")
    u = g.random(len(others))
    atten = g.uniform(0.2, 0.7, len(others))
    delay = g.uniform(0.01, 0.06, len(others))
    network = {
        c: (float(a), float(d))
        for c, x, a, d in zip(others, u, atten, delay, strict=True)
        if phys.propagation_fraction > 0 and _near(soz, c) >= 2
        and x < (0.6 if c in irritative else 0.25)
    }

    # confounders: benign sharp transients (log-normal rates: a few busy contacts),
    # spindles on about half of the shafts
    g = derive_rng(rng, "traits", "confounders")
    rates = phys.sharp_transient_rate * np.exp(1.0 * g.standard_normal(n) - 0.5)
    sharp_rate = {c: float(r) for c, r in zip(contacts, rates, strict=True) if r > 0}
    spindly = g.random(len(electrodes)) < 0.5
    sp_gain = g.uniform(1.0, 3.0, n)
    stem_of = {e.stem: k for k, e in enumerate(electrodes)}
    spindle_gain = {
        c: float(v)
        for c, v in zip(contacts, sp_gain, strict=True)
        if phys.spindle_rate > 0 and spindly[stem_of[c[0]]]
    }

    # HFOs: physiological ripples outside the onset zone, onset-zone contacts without
    # HFOs, fast ripples outside, per-contact SNR
    g = derive_rng(rng, "traits", "hfo")
    u_phys, r_phys = g.random(n), g.uniform(0.5, 1.2, n)
    u_free = g.random(n)
    u_fr, r_fr = g.random(n), g.uniform(0.3, 1.0, n)
    hfo_gains = _log_uniform(g, phys.hfo_snr, n)
    physiological, fast_elsewhere, free = {}, {}, set()
    for k, c in enumerate(contacts):
        if c in soz:
            if u_free[k] < phys.soz_without_hfo_probability:
                free.add(c)
            continue
        if u_phys[k] < phys.physiological_ripple_probability:
            physiological[c] = float(cfg.ripple_rate_soz * r_phys[k])
        if u_fr[k] < phys.fast_ripple_non_soz_probability:
            fast_elsewhere[c] = float(cfg.fast_ripple_rate_soz * r_fr[k])
    hfo_gain = {c: float(v) for c, v in zip(contacts, hfo_gains, strict=True) if v != 1.0}

    # recording: ECG leaking into whole shafts (stronger on the superficial contacts),
    # reference scheme
    g = derive_rng(rng, "traits", "recording")
    leaky = g.random(len(electrodes)) < phys.ecg_leak_probability
    shaft_gain = g.uniform(*phys.ecg_leak_gain, len(electrodes))
    sign = np.where(g.random(len(electrodes)) < 0.5, -1.0, 1.0)
    along = g.uniform(0.5, 1.0, n)
    ecg_leak = {
        c: float(sign[stem_of[c[0]]] * shaft_gain[stem_of[c[0]]] * along[k])
        for k, c in enumerate(contacts)
        if leaky[stem_of[c[0]]] and shaft_gain[stem_of[c[0]]] > 0
    }
    u_ref, ref_gain = g.random(), g.uniform(0.3, 0.8)
    reference = "none"
    if u_ref < phys.common_reference_probability:
        reference = "common"
    elif u_ref < phys.common_reference_probability + phys.average_reference_probability:
        reference = "average"

    # seizures: onset pattern and speed of recruitment
    g = derive_rng(rng, "traits", "seizure")
    hyper, fast = g.random() < phys.hypersynchronous_onset_probability, g.random()
    return SubjectTraits(
        soz_rate_factor=factor,
        quiet=quiet,
        irritative=irritative,
        network=network,
        spike_gain=spike_gain,
        sharp_rate=sharp_rate,
        spindle_gain=spindle_gain,
        physiological_ripples=physiological,
        hfo_free=frozenset(free),
        fast_ripples_elsewhere=fast_elsewhere,
        hfo_gain=hfo_gain,
        ecg_leak=ecg_leak,
        reference=reference,
        reference_gain=float(ref_gain) if reference == "common" else 0.0,
        onset_pattern="hypersync" if hyper else "lvfa",
        fast_spread=bool(fast < phys.fast_spread_probability),
    )


def _near(soz: set[Contact], contact: Contact) -> int:
    """Contacts to the nearest onset-zone contact on the same shaft (99: other shaft)."""
    same = [abs(contact[1] - n) for s, n in soz if s == contact[0]]
    return min(same) if same else 99


@dataclass
class SubjectPlan:
    """Everything decided once per subject.

    Attributes
    ----------
    site, subject : str
        Site key and subject id as written in the source.
    electrodes : list of Electrode
        The implant.
    sigma : dict
        Background SD (microvolts) per contact, the same in every run.
    soz_true : set of Contact
        The generator's onset zone.
    soz_label : set of Contact
        The clinicians' SOZ labels (about ``label_agreement`` of the true zone plus a few
        false positives).
    resected : set of Contact or None
        Resected/ablated contacts (``None`` when the subject had no surgery).
    flat, noisy : set of Contact
        Bad contacts.
    engel_class : int or None
        Engel class 1-4 (``None`` without surgery).
    engel_sub : str
        Engel subclass letter (``A``-``D``).
    ilae_class : int or None
        ILAE class 1-6.
    identity : Identity
        Fake identifying data.
    age, age_onset : int
        Ages in years.
    traits : SubjectTraits
        Departures from the textbook onset zone (neutral by default).
    """

    site: str
    subject: str
    electrodes: list[Electrode]
    sigma: dict[Contact, float]
    soz_true: set[Contact]
    soz_label: set[Contact]
    resected: set[Contact] | None
    flat: set[Contact]
    noisy: set[Contact]
    engel_class: int | None
    engel_sub: str
    ilae_class: int | None
    identity: Identity
    age: int
    age_onset: int
    traits: SubjectTraits = field(default_factory=SubjectTraits)

    @property
    def seizure_free(self) -> bool | None:
        """Engel class 1 means seizure free; ``None`` without surgery."""
        return None if self.engel_class is None else self.engel_class == 1

    @property
    def contacts(self) -> list[Contact]:
        """All contacts in implant order."""
        return [c for e in self.electrodes for c in e.contacts()]

    def electrode_of(self, stem: str) -> Electrode:
        """The electrode with this stem."""
        for e in self.electrodes:
            if e.stem == stem:
                return e
        raise KeyError(stem)


def plan_subject(
    rng: np.random.Generator,
    *,
    site: str,
    subject: str,
    stems: list[str],
    modality: list[str],
    cfg: PhantomConfig,
    locale: str = "us",
    surgery: bool = True,
    grid_stems: frozenset[str] = frozenset(),
) -> SubjectPlan:
    """Plan a subject: implant, true SOZ, labels, resection, outcome and bad contacts.

    Parameters
    ----------
    rng : numpy.random.Generator
        The subject's random source.
    site, subject : str
        Identifiers.
    stems : list of str
        Electrode stems to implant (already chosen by the site's naming convention).
    modality : list of str
        ``seeg``/``ecog`` per stem.
    cfg : PhantomConfig
        Knobs.
    locale : str
        Name pool of the fake identity.
    surgery : bool
        ``False`` for subjects who were not operated (outcome ``NR``).
    grid_stems : frozenset of str
        Stems that are ECoG grids (twice the contacts).

    Returns
    -------
    SubjectPlan
        The plan.
    """
    lo, hi = cfg.contacts_per_electrode
    electrodes = []
    for stem, mod in zip(stems, modality, strict=True):
        n = int(rng.integers(lo, hi + 1))
        if stem in grid_stems:
            n = min(2 * n, 64)
        electrodes.append(Electrode(stem=stem, n_contacts=n, modality=mod))
    b_lo, b_hi = cfg.background_uv
    sigma = {c: float(rng.uniform(b_lo, b_hi)) for e in electrodes for c in e.contacts()}

    # true onset zone: a contiguous run of deep contacts on one electrode, sometimes a
    # second, smaller focus on another electrode (bifocal/network onsets)
    main = electrodes[int(rng.integers(len(electrodes)))]
    run = int(rng.integers(3, min(6, main.n_contacts - 1) + 1))
    first = int(rng.integers(1, max(2, main.n_contacts // 2 - run + 2)))
    soz = {(main.stem, n) for n in range(first, min(first + run, main.n_contacts + 1))}
    if len(electrodes) > 1 and rng.random() < 0.4:
        other = [e for e in electrodes if e.stem != main.stem]
        second = other[int(rng.integers(len(other)))]
        start = int(rng.integers(1, max(2, second.n_contacts - 2)))
        soz |= {(second.stem, n) for n in range(start, min(start + 2, second.n_contacts) + 1)}

    # clinicians' labels: each true contact kept with probability label_agreement (at
    # least one kept), plus false positives next to the zone (the classic over-call)
    soz_sorted = sorted(soz)
    keep = [c for c in soz_sorted if rng.random() < cfg.label_agreement]
    if not keep:
        keep = [soz_sorted[int(rng.integers(len(soz_sorted)))]]
    label = set(keep)
    candidates = sorted(
        {
            (s, n + d)
            for s, n in soz
            for d in (-2, -1, 1, 2)
            if (s, n + d) not in soz and 1 <= n + d <= _n_contacts(electrodes, s)
        }
    )
    fp_lo, fp_hi = cfg.label_false_positives
    n_fp = min(len(candidates), int(rng.integers(fp_lo, fp_hi + 1)))
    if n_fp:
        label |= {candidates[i] for i in rng.choice(len(candidates), n_fp, replace=False)}

    # outcome and resection: seizure-free subjects had the whole true zone removed;
    # failures had only the labelled part of the main focus removed (so the label noise
    # is what failed them, as in real series)
    if surgery:
        free = rng.random() < cfg.seizure_free_probability
        engel = 1 if free else int(rng.integers(2, 5))
        engel_sub = (
            str(rng.choice(list("ABCD"))) if engel in (1, 2) else str(rng.choice(list("AB")))
        )
        ilae = int(rng.integers(1, 3)) if free else int(rng.integers(3, 7))
        margin = {(s, n + d) for s, n in soz | label for d in (-1, 0, 1)}
        if free:
            resected = {c for c in margin if 1 <= c[1] <= _n_contacts(electrodes, c[0])}
        else:
            resected = {c for c in label if c[0] == main.stem}
            resected |= {(s, n + 1) for s, n in resected if n + 1 <= main.n_contacts}
    else:
        engel, engel_sub, ilae, resected = None, "", None, None

    # bad contacts: never the whole onset zone, preferably outside it
    pool = [c for e in electrodes for c in e.contacts() if c not in soz]
    n_bad = min(len(pool), cfg.n_flat_channels + cfg.n_noisy_channels)
    picks = [pool[i] for i in rng.choice(len(pool), n_bad, replace=False)] if n_bad else []
    flat = set(picks[: cfg.n_flat_channels])
    noisy = set(picks[cfg.n_flat_channels :])

    age = int(rng.integers(18, 65))
    return SubjectPlan(
        site=site,
        subject=subject,
        electrodes=electrodes,
        sigma=sigma,
        soz_true=soz,
        soz_label=label,
        resected=resected,
        flat=flat,
        noisy=noisy,
        engel_class=engel,
        engel_sub=engel_sub,
        ilae_class=ilae,
        identity=fake_identity(rng, locale),
        age=age,
        age_onset=int(rng.integers(1, age - 2)),
        traits=plan_traits(rng, electrodes, soz, cfg.physiology, cfg),
    )


def _n_contacts(electrodes: list[Electrode], stem: str) -> int:
    for e in electrodes:
        if e.stem == stem:
            return e.n_contacts
    return 0


@dataclass(frozen=True)
class ChannelDef:
    """One channel of a recording as written in a file.

    Attributes
    ----------
    raw : str
        Name in the file.
    role : str
        ``contact``, ``scalp``, ``ecg``, ``event`` or ``dc``.
    contact : Contact or None
        The subject contact behind the channel (contacts only).
    modality : str
        Truth type of a contact channel (``seeg``/``ecog``); ignored for other roles.
    """

    raw: str
    role: str
    contact: Contact | None = None
    modality: str = "seeg"

    @property
    def canonical(self) -> str:
        """Canonical key of the raw name."""
        return canonical_channel(self.raw)

    @property
    def truth_type(self) -> str:
        """Truth channel type (scalp ``eeg``, EKG ``ecg``, EVENT/DC ``misc``)."""
        if self.role == "contact":
            return self.modality
        return truth_channel_type(self.canonical, self.modality)

    @property
    def electrode(self) -> str | None:
        """Canonical electrode stem (contacts only)."""
        if self.role != "contact":
            return None
        split = split_contact(self.canonical)
        return None if split is None else split[0]

    @property
    def contact_number(self) -> int | None:
        """Contact number (contacts only)."""
        if self.role != "contact":
            return None
        split = split_contact(self.canonical)
        return None if split is None else split[1]


@dataclass(frozen=True)
class PlannedSignal:
    """A recording's signal plan plus the truth of what was planted.

    Attributes
    ----------
    spec : SignalSpec
        Input of the simulator.
    spikes, hfos : list of (int, float, str)
        ``(channel row, time_s, kind)`` of planted spikes and HFOs.
    artifacts : list of (int, float, float, str)
        ``(channel row or -1, onset_s, duration_s, kind)``.
    seizure : tuple of (float, float) or None
        Electrographic onset and offset.
    early_spread : set of Contact
        Contacts recruited within 10 s of onset (outside the onset zone).
    transients : list of (int, float, float, str)
        ``(channel row, time_s, duration_s, kind)`` of planted confounders: benign
        ``sharp`` transients and ``spindle`` bursts.
    onset_pattern : str or None
        ``lvfa`` or ``hypersync`` (``None`` without a seizure).
    """

    spec: SignalSpec
    spikes: list[tuple[int, float, str]]
    hfos: list[tuple[int, float, str]]
    artifacts: list[tuple[int, float, float, str]]
    seizure: tuple[float, float] | None
    early_spread: set[Contact]
    transients: list[tuple[int, float, float, str]] = field(default_factory=list)
    onset_pattern: str | None = None


class _Transients:
    """Column lists of a :class:`TransientTable` under construction."""

    def __init__(self) -> None:
        self.cols: dict[str, list[float]] = {
            k: [] for k in ("channel", "time", "kind", "amp", "p1", "p2", "p3")
        }
        self.gains: list[np.ndarray] = []

    def add(
        self,
        row: int,
        t: float,
        kind: str,
        amp: float,
        p1: float = 0.0,
        p2: float = 0.0,
        p3: float = 0.0,
    ) -> None:
        for key, value in zip(self.cols, (row, t, KIND_CODES[kind], amp, p1, p2, p3), strict=True):
            self.cols[key].append(float(value))

    def table(self, n_ch: int) -> TransientTable:
        gains = np.vstack(self.gains) if self.gains else np.zeros((0, n_ch), dtype=np.float32)
        return TransientTable.build(self.cols, gains)


@dataclass(frozen=True)
class _Layout:
    """Per-channel arrays of a recording derived from its channel list."""

    role: tuple[str, ...]
    electrode: np.ndarray
    position: np.ndarray
    sigma: np.ndarray
    flat: np.ndarray
    noisy: np.ndarray
    good_contact: np.ndarray
    rows: dict[Contact, int]

    @property
    def contact_of(self) -> dict[int, Contact]:
        """Row to contact (contacts only)."""
        return {i: c for c, i in self.rows.items()}


def _layout(rng: np.random.Generator, subject: SubjectPlan, channels: list[ChannelDef]) -> _Layout:
    n_ch = len(channels)
    stems = [e.stem for e in subject.electrodes]
    electrode = np.full(n_ch, -1, dtype=np.int64)
    position = np.zeros(n_ch, dtype=np.int64)
    sigma = np.zeros(n_ch, dtype=np.float64)
    flat = np.zeros(n_ch, dtype=bool)
    noisy = np.zeros(n_ch, dtype=bool)
    for i, ch in enumerate(channels):
        if ch.role == "contact" and ch.contact is not None:
            electrode[i] = stems.index(ch.contact[0])
            position[i] = ch.contact[1]
            sigma[i] = subject.sigma[ch.contact]
            flat[i] = ch.contact in subject.flat
            noisy[i] = ch.contact in subject.noisy
        elif ch.role == "scalp":
            electrode[i] = len(stems)  # scalp channels share one latent group ...
            position[i] = 100 * i  # ... but are nobody's neighbours
            sigma[i] = rng.uniform(10.0, 20.0)
        elif ch.role == "ecg":
            sigma[i] = 5.0  # rendered from QRS templates; this only sizes the EDF range
    good = np.array(
        [ch.role == "contact" and not (flat[i] or noisy[i]) for i, ch in enumerate(channels)]
    )
    rows = {ch.contact: i for i, ch in enumerate(channels) if ch.contact is not None}
    return _Layout(
        tuple(ch.role for ch in channels), electrode, position, sigma, flat, noisy, good, rows
    )


def _mains_amplitudes(rng: np.random.Generator, lay: _Layout, base: float) -> np.ndarray:
    """Fundamental and harmonic amplitude per channel (impedance-dependent pick-up)."""
    n_ch = len(lay.role)
    role = np.asarray(lay.role)
    amp = np.zeros((n_ch, 2))
    amp[:, 0] = base * rng.uniform(0.3, 1.5, n_ch)
    amp[:, 1] = amp[:, 0] * rng.uniform(0.1, 0.3, n_ch)
    amp[role == "scalp"] *= 2.0
    amp[lay.noisy] *= 8.0  # a broken contact picks up the mains strongly
    amp[lay.flat | np.isin(role, ["event", "dc"])] = 0.0
    return amp


def _soz_distance(subject: SubjectPlan, contact: Contact) -> int:
    """Contacts to the nearest true-SOZ contact on the same shaft (99: other shaft)."""
    return _near(subject.soz_true, contact)


def _plan_spikes(
    rng: np.random.Generator,
    subject: SubjectPlan,
    channels: list[ChannelDef],
    lay: _Layout,
    tr: _Transients,
    duration: float,
    exclude: list[tuple[float, float]],
    cfg: PhantomConfig,
) -> tuple[list[tuple[int, float, str]], dict[int, list[float]]]:
    """Interictal spikes; onset-zone spikes reach a neighbour a few ms later (a field).

    The patient's traits set the onset zone's rate (quiet onset zones), the irritative
    zone's rates, each contact's spike SNR, and the network contacts that receive
    propagated onset-zone spikes (truth kind ``propagated``).
    """
    traits = subject.traits
    width_range = cfg.physiology.spike_width_s
    polarity = {e.stem: (-1.0 if rng.random() < 0.7 else 1.0) for e in subject.electrodes}
    # (time, amplitude, width, kind) per row
    planned: dict[int, list[tuple[float, float, float, str]]] = {}
    for i, ch in enumerate(channels):
        # good contact rows always carry their contact; the None test narrows the type
        if not lay.good_contact[i] or ch.contact is None:
            continue
        d = _soz_distance(subject, ch.contact)
        if d == 0:
            rate = cfg.spike_rate_soz * traits.soz_rate_factor
        else:
            rate = cfg.spike_rate_non_soz * (2.0 if d == 1 else 1.0)
            rate = max(rate, traits.irritative.get(ch.contact, 0.0))
        gain = traits.spike_gain.get(ch.contact, 1.0)
        for t in poisson_times(rng, rate, 0.5, duration - 0.5, min_gap=0.3, exclude=exclude):
            amp = rng.uniform(*cfg.spike_amplitude) * lay.sigma[i] * polarity[ch.contact[0]]
            amp *= gain
            width = rng.uniform(*width_range)
            planned.setdefault(i, []).append((t, amp, width, "spike"))
            if d == 0 and rng.random() < 0.5:
                for nb in ((ch.contact[0], ch.contact[1] - 1), (ch.contact[0], ch.contact[1] + 1)):
                    j = lay.rows.get(nb)
                    if j is not None and lay.good_contact[j] and rng.random() < 0.6:
                        planned.setdefault(j, []).append(
                            (t + rng.uniform(0.0, 0.008), amp * rng.uniform(0.5, 0.8), width,
                             "spike")
                        )
    _propagate(derive_rng(rng, "propagation"), subject, lay, planned, cfg)
    spikes: list[tuple[int, float, str]] = []
    kept_by_row: dict[int, list[float]] = {}
    for i in sorted(planned):
        kept: list[float] = []
        for t, amp, width, kind in sorted(planned[i]):
            # copies from a neighbour may crowd a channel's own spikes: keep them separable
            if (kept and t - kept[-1] < 0.3) or t > duration - 0.5:
                continue
            kept.append(t)
            tr.add(i, t, "spike", amp, width)
            spikes.append((i, t, kind))
        kept_by_row[i] = kept
    return spikes, kept_by_row


def _propagate(
    rng: np.random.Generator,
    subject: SubjectPlan,
    lay: _Layout,
    planned: dict[int, list[tuple[float, float, float, str]]],
    cfg: PhantomConfig,
) -> None:
    """Copy some onset-zone spikes, delayed and attenuated, to the network contacts.

    A propagated spike keeps its source's polarity and is broadened a little (low-pass
    filtering by the tissue); each network contact has a fixed delay and attenuation,
    with a few ms of jitter per spike.
    """
    fraction = cfg.physiology.propagation_fraction
    targets = [
        (j, *subject.traits.network[c])
        for c, j in sorted(lay.rows.items())
        if c in subject.traits.network and lay.good_contact[j]
    ]
    if fraction <= 0 or not targets:
        return
    sources = sorted(
        (t, amp, width)
        for i, events in planned.items()
        if lay.contact_of.get(i) in subject.soz_true
        for t, amp, width, kind in events
        if kind == "spike"
    )
    for t, amp, width in sources:
        if rng.random() >= fraction:
            continue
        reach = rng.random(len(targets))
        jitter = rng.uniform(-0.004, 0.004, len(targets))
        for (j, atten, delay), x, dj in zip(targets, reach, jitter, strict=True):
            if x < 0.7:
                planned.setdefault(j, []).append(
                    (t + delay + dj, amp * atten, width * 1.3, "propagated")
                )


def _plan_hfos(
    rng: np.random.Generator,
    subject: SubjectPlan,
    channels: list[ChannelDef],
    lay: _Layout,
    tr: _Transients,
    sfreq: float,
    duration: float,
    exclude: list[tuple[float, float]],
    spikes_by_row: dict[int, list[float]],
    cfg: PhantomConfig,
) -> list[tuple[int, float, str]]:
    """Ripples (some riding on onset-zone spikes) and fast ripples when sfreq allows.

    HFOs are planted up to 0.4 x the source rate (or ``hfo_rate_cap_hz``). The patient's
    traits add physiological ripples and fast ripples outside the onset zone, remove
    pathological HFOs from some onset-zone contacts and scale each contact's HFO SNR.
    """
    traits = subject.traits
    cap = cfg.physiology.hfo_rate_cap_hz
    spectrum = background_spectrum(sfreq, exponent=cfg.background_exponent)
    f_cap = _HFO_NYQUIST_FRACTION * (min(sfreq, cap) if cap > 0 else sfreq)
    r_hi, fr_hi = min(250.0, f_cap), min(500.0, f_cap)
    ripple_rms = band_rms_fraction(spectrum, 80.0, 250.0)
    fr_rms = band_rms_fraction(spectrum, 250.0, 500.0)
    hfos: list[tuple[int, float, str]] = []
    for i, ch in enumerate(channels):
        # good contact rows always carry their contact; the None test narrows the type
        if not lay.good_contact[i] or ch.contact is None:
            continue
        in_soz = _soz_distance(subject, ch.contact) == 0 and ch.contact not in traits.hfo_free
        gain = traits.hfo_gain.get(ch.contact, 1.0)
        events: list[tuple[float, str]] = []
        if r_hi >= 100.0:
            rate = cfg.ripple_rate_soz if in_soz else cfg.ripple_rate_non_soz
            rate = max(rate, traits.physiological_ripples.get(ch.contact, 0.0))
            times = list(poisson_times(rng, rate, 0.5, duration - 0.5, exclude=exclude))
            if in_soz:
                times += [
                    s - rng.uniform(0.0, 0.02)
                    for s in spikes_by_row.get(i, [])
                    if rng.random() < 0.3
                ]
            events += [(t, "ripple") for t in times]
        if fr_hi >= 300.0:
            rate = cfg.fast_ripple_rate_soz if in_soz else cfg.fast_ripple_rate_non_soz
            rate = max(rate, traits.fast_ripples_elsewhere.get(ch.contact, 0.0))
            events += [
                (t, "fast_ripple")
                for t in poisson_times(rng, rate, 0.5, duration - 0.5, exclude=exclude)
            ]
        last = -1e9
        for t, kind in sorted(events):
            if t - last < 0.25 or t < 0.5 or t > duration - 0.5:
                continue
            last = t
            if kind == "ripple":
                freq = rng.uniform(80.0, r_hi)
                dur = max(rng.uniform(0.03, 0.08), 4.0 / freq)
                amp = rng.uniform(*cfg.hfo_amplitude) * lay.sigma[i] * ripple_rms * gain
            else:
                freq = rng.uniform(250.0, fr_hi)
                dur = max(rng.uniform(0.015, 0.04), 6.0 / freq)
                amp = rng.uniform(*cfg.hfo_amplitude) * lay.sigma[i] * fr_rms * gain
            tr.add(i, t, kind, amp, freq, dur, rng.uniform(0, 2 * np.pi))
            hfos.append((i, t, kind))
    return hfos


def _plan_artifacts(
    rng: np.random.Generator, lay: _Layout, tr: _Transients, duration: float, cfg: PhantomConfig
) -> list[tuple[int, float, float, str]]:
    """Movement bursts on every channel and electrode pops on single good contacts."""
    artifacts: list[tuple[int, float, float, str]] = []
    bg_rows = np.flatnonzero(lay.electrode >= 0)
    med_sigma = float(np.median(lay.sigma[bg_rows])) if bg_rows.size else 1.0
    for t in poisson_times(rng, cfg.artifact_rate_per_min / 2.0, 1.0, duration - 1.0):
        width = rng.uniform(0.1, 0.4)
        gain = np.zeros(len(lay.role), dtype=np.float32)
        gain[bg_rows] = rng.normal(1.0, 0.3, bg_rows.size) * (1 if rng.random() < 0.5 else -1)
        gain[lay.flat] = 0.0
        tr.add(
            -1, t, "movement", rng.uniform(4.0, 8.0) * med_sigma, width, 0.0, float(len(tr.gains))
        )
        tr.gains.append(gain)
        artifacts.append((-1, t - 3.5 * width, 7.0 * width, "movement"))
    good_rows = np.flatnonzero(lay.good_contact)
    if good_rows.size:
        for t in poisson_times(rng, cfg.artifact_rate_per_min / 2.0, 1.0, duration - 1.0):
            row = int(good_rows[rng.integers(good_rows.size)])
            tau = rng.uniform(0.05, 0.3)
            amp = rng.uniform(5.0, 12.0) * lay.sigma[row] * (1 if rng.random() < 0.5 else -1)
            tr.add(row, t, "pop", amp, tau)
            artifacts.append((row, t, 6.0 * tau, "pop"))
    return artifacts


def _plan_auxiliary(
    rng: np.random.Generator, channels: list[ChannelDef], tr: _Transients, duration: float
) -> tuple[np.ndarray, list[float]]:
    """QRS complexes on ECG channels, trigger pulses on EVENT, drift parameters of DC.

    Returns the DC parameters and the R-peak times (for ECG leaking into contacts).
    """
    dc = np.zeros((len(channels), 4))
    heart = rng.uniform(60.0, 90.0)
    ecg_amp = rng.uniform(600.0, 1200.0)
    beats: list[float] = []
    t = rng.uniform(0.0, 1.0)
    while t < duration:
        beats.append(t)
        t += max(0.4, rng.normal(60.0 / heart, 0.04))  # heart-rate variability
    for i, ch in enumerate(channels):
        if ch.role == "ecg":
            sign = 1.0 if rng.random() < 0.8 else -1.0  # some leads are inverted
            for b in beats:
                tr.add(i, b, "qrs", sign * ecg_amp * rng.uniform(0.95, 1.05))
        elif ch.role == "event":
            for p in np.arange(0.0, duration - 0.1, rng.uniform(20.0, 40.0)):
                tr.add(i, float(p), "pulse", 1000.0, 0.05)
        elif ch.role == "dc":
            dc[i] = (
                rng.uniform(-2000, 2000),
                rng.uniform(200, 1000),
                rng.uniform(0.005, 0.02),
                rng.uniform(0, 2 * np.pi),
            )
    return dc, beats


def _plan_confounders(
    rng: np.random.Generator,
    subject: SubjectPlan,
    lay: _Layout,
    tr: _Transients,
    duration: float,
    exclude: list[tuple[float, float]],
    beats: list[float],
    cfg: PhantomConfig,
) -> list[tuple[int, float, float, str]]:
    """Benign sharp transients, sleep spindles and ECG leaking into contacts.

    Sharp transients (a Ricker wavelet 30-80 ms wide, 3-6 background SDs) and spindles
    (11-16 Hz, 0.5-2 s, shared by every contact of a spindle-bearing shaft with a common
    phase) are returned for the truth table; the leaked ECG is one all-channel QRS event
    per heartbeat whose gain row holds each leaking contact's R amplitude.
    """
    traits = subject.traits
    phys = cfg.physiology
    found: list[tuple[int, float, float, str]] = []
    contact_of = lay.contact_of
    good = [int(i) for i in np.flatnonzero(lay.good_contact)]
    for i in good:
        rate = traits.sharp_rate.get(contact_of[int(i)], 0.0)
        for t in poisson_times(rng, rate, 0.5, duration - 0.5, min_gap=0.3, exclude=exclude):
            width = rng.uniform(0.03, 0.08)
            amp = rng.uniform(3.0, 6.0) * lay.sigma[i] * (1.0 if rng.random() < 0.5 else -1.0)
            tr.add(int(i), t, "sharp", amp, width)
            found.append((int(i), float(t), float(4.4 * width), "sharp"))
    by_shaft: dict[int, list[int]] = {}
    for i in good:
        if contact_of[int(i)] in traits.spindle_gain:
            by_shaft.setdefault(int(lay.electrode[i]), []).append(int(i))
    edge = min(1.5, duration / 2.0)  # whole spindles, even in recordings of a few seconds
    for shaft in sorted(by_shaft):
        for t in poisson_times(rng, phys.spindle_rate, edge, duration - edge, exclude=exclude):
            freq, dur, phase = rng.uniform(11.0, 16.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.3)
            for i in by_shaft[shaft]:
                amp = traits.spindle_gain[contact_of[i]] * lay.sigma[i]
                tr.add(i, t, "spindle", amp, freq, dur, phase + rng.uniform(-0.3, 0.3))
                found.append((i, float(t), float(dur), "spindle"))
    leak = np.zeros(len(lay.role), dtype=np.float32)
    for i in good:
        leak[i] = traits.ecg_leak.get(contact_of[int(i)], 0.0) * lay.sigma[i]
    if np.any(leak):
        row = float(len(tr.gains))
        tr.gains.append(leak)
        for b in beats:
            tr.add(-1, b, "qrs", 1.0, 0.0, 0.0, row)
    return found


def plan_signal(
    rng: np.random.Generator,
    subject: SubjectPlan,
    channels: list[ChannelDef],
    *,
    sfreq: float,
    n_samples: int,
    mains_hz: float,
    cfg: PhantomConfig,
    seizure: tuple[float, float] | None = None,
    seed_words: tuple[int, ...] = (0,),
) -> PlannedSignal:
    """Place every transient and the seizure of one recording.

    Parameters
    ----------
    rng : numpy.random.Generator
        The recording's planning random source.
    subject : SubjectPlan
        The subject.
    channels : list of ChannelDef
        Channels in file order.
    sfreq : float
        Sampling rate.
    n_samples : int
        Recording length.
    mains_hz : float
        Site mains frequency.
    cfg : PhantomConfig
        Knobs.
    seizure : tuple of (float, float), optional
        Electrographic onset/offset in seconds (ictal runs).
    seed_words : tuple of int
        Seed of the rendering noise.

    Returns
    -------
    PlannedSignal
        The spec and the planted truth.
    """
    duration = n_samples / sfreq
    lay = _layout(rng, subject, channels)
    mains_amp = _mains_amplitudes(rng, lay, cfg.mains_amplitude_uv)
    sz_spec: SeizureSpec | None = None
    early: set[Contact] = set()
    exclude: list[tuple[float, float]] = []
    if seizure is not None:
        sz_spec, early = _plan_seizure(rng, subject, channels, seizure, cfg, sfreq)
        # interictal events are not planted around the seizure and its post-ictal period
        exclude = [(seizure[0] - 3.0, seizure[1] + 2.0 * cfg.postictal_s)]
    tr = _Transients()
    spikes, by_row = _plan_spikes(rng, subject, channels, lay, tr, duration, exclude, cfg)
    hfos = _plan_hfos(rng, subject, channels, lay, tr, sfreq, duration, exclude, by_row, cfg)
    artifacts = _plan_artifacts(rng, lay, tr, duration, cfg)
    dc, beats = _plan_auxiliary(rng, channels, tr, duration)
    confounders = _plan_confounders(
        derive_rng(rng, "confounders"), subject, lay, tr, duration, exclude, beats, cfg
    )
    traits = subject.traits
    contacts = lay.good_contact
    ref_uv = (traits.reference_gain * float(np.median(lay.sigma[contacts]))
              if contacts.any() else 0.0)
    spec = SignalSpec(
        sfreq=float(sfreq),
        n_samples=int(n_samples),
        seed_words=tuple(int(w) for w in seed_words),
        role=lay.role,
        electrode=lay.electrode,
        position=lay.position,
        sigma=lay.sigma,
        flat=lay.flat,
        noisy=lay.noisy,
        mains_hz=float(mains_hz),
        mains_amp=mains_amp,
        transients=tr.table(len(channels)),
        seizure=sz_spec,
        dc=dc,
        exponent=cfg.background_exponent,
        reference=traits.reference,
        reference_uv=ref_uv,
    )
    return PlannedSignal(
        spec=spec,
        spikes=spikes,
        hfos=hfos,
        artifacts=artifacts,
        seizure=seizure,
        early_spread=early,
        transients=confounders,
        onset_pattern=None if sz_spec is None else sz_spec.onset_pattern,
    )


def _plan_seizure(
    rng: np.random.Generator,
    subject: SubjectPlan,
    channels: list[ChannelDef],
    window: tuple[float, float],
    cfg: PhantomConfig,
    sfreq: float,
) -> tuple[SeizureSpec, set[Contact]]:
    """Recruitment times, amplitudes and lags of one seizure (see SeizureSpec).

    The patient's traits choose the onset pattern (low-voltage fast activity or
    hypersynchronous spikes, five times the LVFA amplitude) and fast recruitment (a
    quarter of ``spread_delay_s``).
    """
    traits = subject.traits
    hyper = traits.onset_pattern == "hypersync"
    spread = cfg.spread_delay_s * (0.25 if traits.fast_spread else 1.0)
    onset, offset = window
    n_ch = len(channels)
    soz_stems = {s for s, _ in subject.soz_true}
    # each non-onset electrode joins at a hop distance through an entry contact, or never
    hop: dict[str, tuple[float, int] | None] = {}
    for e in subject.electrodes:
        if e.stem in soz_stems:
            continue
        if rng.random() < 0.6:
            hop[e.stem] = (float(rng.uniform(2.0, 6.0)), int(rng.integers(1, e.n_contacts + 1)))
        else:
            hop[e.stem] = None
    recruit = np.full(n_ch, np.nan)
    lvfa = np.zeros(n_ch, dtype=bool)
    amplitude = np.zeros(n_ch)
    lvfa_amp = np.zeros(n_ch)
    lag = np.zeros(n_ch)
    early: set[Contact] = set()
    for i, ch in enumerate(channels):
        if ch.role != "contact" or ch.contact is None or ch.contact in subject.flat:
            continue
        stem, num = ch.contact
        if ch.contact in subject.soz_true:
            d = 0.0
        elif stem in soz_stems:
            d = float(min(abs(num - n) for s, n in subject.soz_true if s == stem))
        elif (stem_hop := hop.get(stem)) is not None:
            h, entry = stem_hop
            d = h + 0.5 * abs(num - entry)
        else:
            continue
        t_rec = onset + rng.uniform(0.0, 0.5) + spread * d * rng.uniform(0.7, 1.3)
        if t_rec > offset - 3.0:
            continue
        recruit[i] = t_rec
        lvfa[i] = d == 0.0
        sig = subject.sigma[ch.contact]
        amplitude[i] = rng.uniform(*cfg.ictal_amplitude) * sig * float(np.exp(-d / 4.0))
        lvfa_amp[i] = rng.uniform(0.6, 1.2) * sig if d == 0.0 else 0.0
        if hyper:
            lvfa_amp[i] *= 5.0
        lag[i] = 0.004 * d + rng.uniform(0.0, 0.01)
        if d > 0 and t_rec - onset <= 10.0:
            early.add(ch.contact)
    dur = offset - onset
    l_lo, l_hi = cfg.lvfa_duration_s
    lvfa_dur = float(min(rng.uniform(l_lo, l_hi), max(1.0, 0.3 * dur)))
    spec = SeizureSpec(
        onset_s=float(onset),
        offset_s=float(offset),
        recruit_s=recruit,
        lvfa=lvfa,
        amplitude=amplitude,
        lvfa_amplitude=lvfa_amp,
        lag_s=lag,
        polarity=np.where(rng.random(n_ch) < 0.7, -1.0, 1.0),
        lvfa_phase=rng.uniform(0, 2 * np.pi, n_ch),
        lvfa_duration_s=lvfa_dur,
        lvfa_f_hi=float(min(100.0, 0.4 * sfreq)),
        lvfa_f_lo=float(min(30.0, 0.15 * sfreq)),
        rhythm_f_start=float(rng.uniform(6.0, 9.0)),
        rhythm_f_end=float(rng.uniform(2.0, 3.5)),
        rhythm_tau=float(0.4 * dur),
        postictal_s=float(cfg.postictal_s),
        onset_pattern=traits.onset_pattern,
        hyper_f=float(derive_rng(rng, "hypersync").uniform(1.0, 2.0)),
    )
    return spec, early
