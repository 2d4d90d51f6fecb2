"""Site writers: each synthetic site in the on-disk layout of its real counterpart.

* :func:`build_hup` — BIDS/EDF like OpenNeuro ds004100 (HUP): labels as
  ``status_description`` tokens, three channel-naming eras, ``sz onset`` at 120 s.
* :func:`build_multicenter` — BIDS/BrainVision like ds003029: four sub-sites with their
  own free-text markers, float sampling rates, SOZ only in an external clinical CSV.
* :func:`build_chul` — a private French site: a folder of EDF+ files, a CSV manifest with
  identifying columns, prime contact names, French annotations.

Each builder writes every metadata file at once, records the truth, and returns the
signal files still to render as :class:`~sozstore.phantom.render.RenderJob` objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from sozstore.phantom.config import PhantomConfig, rng_for
from sozstore.phantom.edf import EdfAnnotation, edf_recording_field, whole_records
from sozstore.phantom.naming import (
    SCALP_10_20,
    canonical_channel,
    compress_contacts,
    natural_sorted,
)
from sozstore.phantom.plan import (
    ChannelDef,
    Contact,
    PlannedSignal,
    SubjectPlan,
    plan_signal,
    plan_subject,
)
from sozstore.phantom.render import RenderJob
from sozstore.phantom.siteconfig import classify_event, render_site_toml
from sozstore.phantom.textio import write_csv, write_json, write_text, write_tsv
from sozstore.phantom.truth import Truth

__all__ = ["SITES", "SiteBuild", "build_chul", "build_hup", "build_multicenter"]

_CH_HEADER = (
    "name type units low_cutoff high_cutoff description sampling_frequency status "
    "status_description"
).split()
_EV_HEADER = "onset duration trial_type value sample".split()


@dataclass
class SiteBuild:
    """What a site builder produced.

    Attributes
    ----------
    name : str
        Site key.
    root : Path
        ``OUT/raw/<site>``.
    toml : Path
        ``OUT/sites/<site>.toml``.
    jobs : list of RenderJob
        Signal files still to render.
    n_subjects, n_recordings : int
        Counts.
    """

    name: str
    root: Path
    toml: Path
    jobs: list[RenderJob] = field(default_factory=list)
    n_subjects: int = 0
    n_recordings: int = 0


@dataclass(frozen=True)
class _Labels:
    """Per-channel metadata as written in the site's files (for the truth table)."""

    bad: list[bool]
    soz: list[bool | None]
    resected: list[bool | None]


class _Site:
    """Bookkeeping shared by the site builders: seeds, planning, jobs and truth rows.

    Parameters
    ----------
    name : str
        Site key.
    out : Path
        Cohort folder.
    seed : int
        Cohort seed.
    cfg : PhantomConfig
        Knobs.
    truth : Truth
        Collector of the truth tables.
    mains_hz : float
        Mains frequency of the site.
    """

    def __init__(
        self, name: str, out: Path, seed: int, cfg: PhantomConfig, truth: Truth, mains_hz: float
    ) -> None:
        self.name = name
        self.seed = seed
        self.cfg = cfg
        self.truth = truth
        self.mains = mains_hz
        self.root = out / "raw" / name
        self.build = SiteBuild(name=name, root=self.root, toml=out / "sites" / f"{name}.toml")

    def rng(self, subject: str, purpose: str) -> np.random.Generator:
        """Random source of one subject (``purpose="subject"``) or one of its recordings."""
        return rng_for(self.seed, self.name, subject, purpose)

    def high_rate(self, subject: str) -> bool:
        """Whether a subject records at the site's high rate (``high_rate_probability``).

        Drawn from its own stream, so the knob changes no other choice.
        """
        p = self.cfg.physiology.high_rate_probability
        return bool(self.rng(subject, "sampling-rate").random() < p)

    def plan(
        self,
        rng: np.random.Generator,
        sp: SubjectPlan,
        chans: list[ChannelDef],
        *,
        key: str,
        sfreq: float,
        n_samples: int,
        window: tuple[float, float] | None,
    ) -> PlannedSignal:
        """Plan a recording's signal (its rendering noise is seeded by ``key``)."""
        noise = rng_for(self.seed, self.name, sp.subject, key, "noise")
        return plan_signal(
            rng,
            sp,
            chans,
            sfreq=sfreq,
            n_samples=n_samples,
            mains_hz=self.mains,
            cfg=self.cfg,
            seizure=window,
            seed_words=tuple(int(x) for x in noise.integers(0, 2**32, size=4)),
        )

    def emit(
        self,
        sp: SubjectPlan,
        chans: list[ChannelDef],
        planned: PlannedSignal,
        *,
        rel: str,
        task: str,
        labels: _Labels,
        markers: list[tuple[float, str]],
        **job: Any,
    ) -> None:
        """Queue the signal file and record the recording in the truth tables.

        Parameters
        ----------
        sp : SubjectPlan
            Subject.
        chans : list of ChannelDef
            Channels in file order.
        planned : PlannedSignal
            The planned signal.
        rel : str
            Signal file path relative to the site root (the truth ``source_path``).
        task : str
            ``ictal`` or ``interictal``.
        labels : _Labels
            Bad/SOZ/resected flags as written in the site's metadata.
        markers : list of (float, str)
            Annotations as written (events.tsv, EDF+ TALs or .vmrk markers).
        **job
            Remaining :class:`RenderJob` fields (format, header fields, ...).
        """
        self.build.jobs.append(
            RenderJob(
                path=self.root / rel,
                spec=planned.spec,
                labels=tuple(c.raw for c in chans),
                block_s=self.cfg.block_s,
                **job,
            )
        )
        self._truth_recording(sp, chans, planned, rel, task, labels)
        for onset, text in markers:
            kind = classify_event(self.name, text)
            if kind is not None:  # NK boilerplate is not an event
                self.truth.add(
                    "events",
                    site=self.name,
                    subject=sp.subject,
                    source_path=rel,
                    onset_s=float(onset),
                    kind=kind,
                    raw_text=text,
                )

    def _truth_recording(
        self,
        sp: SubjectPlan,
        chans: list[ChannelDef],
        planned: PlannedSignal,
        rel: str,
        task: str,
        labels: _Labels,
    ) -> None:
        spec = planned.spec
        ref = {"site": self.name, "subject": sp.subject, "source_path": rel}
        self.truth.add(
            "recordings",
            **ref,
            task=task,
            sfreq=float(spec.sfreq),
            n_channels=len(chans),
            duration_s=spec.n_samples / spec.sfreq,
            mains_hz=float(self.mains),
            reference=spec.reference,
            onset_pattern=planned.onset_pattern,
        )
        for i, ch in enumerate(chans):
            self.truth.add(
                "channels",
                **ref,
                raw_name=ch.raw,
                channel=ch.canonical,
                electrode=ch.electrode,
                contact=ch.contact_number,
                type=ch.truth_type,
                bad=bool(labels.bad[i]),
                soz=labels.soz[i],
                resected=labels.resected[i],
                soz_true=ch.contact is not None and ch.contact in sp.soz_true,
                irritative=ch.contact is not None and ch.contact in sp.traits.irritative,
                ecg_leak=ch.contact is not None and ch.contact in sp.traits.ecg_leak,
            )
        for row, t, kind in planned.spikes:
            self.truth.add("spikes", **ref, channel=chans[row].canonical, time_s=t, kind=kind)
        for row, t, kind in planned.hfos:
            self.truth.add("hfos", **ref, channel=chans[row].canonical, time_s=t, kind=kind)
        for row, t, dur, kind in planned.transients:
            self.truth.add(
                "transients", **ref, channel=chans[row].canonical, time_s=t, duration_s=dur,
                kind=kind,
            )
        for row, t, dur, kind in planned.artifacts:
            name = None if row < 0 else chans[row].canonical
            self.truth.add("artifacts", **ref, channel=name, onset_s=t, duration_s=dur, kind=kind)
        if planned.seizure is not None:
            on, off = planned.seizure
            self.truth.add("seizures", **ref, onset_s=on, offset_s=off)

    def finish_subject(self, sp: SubjectPlan, outcome_raw: str, n_recordings: int) -> None:
        """Record the subject's outcome and count it."""
        self.truth.add(
            "subjects",
            site=self.name,
            subject=sp.subject,
            outcome_raw=outcome_raw,
            seizure_free=sp.seizure_free,
            engel_class=sp.engel_class,
            n_recordings=n_recordings,
        )
        self.build.n_subjects += 1
        self.build.n_recordings += n_recordings

    def write_toml(self, **kwargs: Any) -> None:
        """Write ``OUT/sites/<site>.toml`` (see :func:`render_site_toml`)."""
        write_text(self.build.toml, render_site_toml(name=self.name, mains_hz=self.mains, **kwargs))


# ----------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------


def _seizure_window(
    rng: np.random.Generator, duration: float, cfg: PhantomConfig, onset: float | None = None
) -> tuple[float, float]:
    """Onset/offset of the seizure of an ictal run, shrunk to fit short runs."""
    if onset is None or onset + min(cfg.seizure_duration_s[0], 10.0) + 5.0 > duration:
        onset = float(rng.uniform(0.3, 0.45) * duration)
    room = duration - onset - max(5.0, 0.1 * duration)
    lo, hi = cfg.seizure_duration_s
    length = float(min(rng.uniform(lo, hi), room * rng.uniform(0.75, 1.0)))
    length = max(length, min(5.0, room))
    return float(onset), float(onset + length)


def _start_datetime(rng: np.random.Generator, year_lo: int, year_hi: int) -> datetime:
    """A plausible recording start (daytime) between two years."""
    days = int(rng.integers(0, (year_hi - year_lo) * 365))
    secs = int(rng.integers(7 * 3600, 20 * 3600))
    return datetime(year_lo, 1, 1) + timedelta(days=days, seconds=secs)


def _runs(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _pick(rng: np.random.Generator, pool: list[str], k: int) -> list[str]:
    """``k`` distinct names of ``pool``, in pool order."""
    k = min(k, len(pool))
    return [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]


def _n_electrodes(rng: np.random.Generator, cfg: PhantomConfig) -> int:
    lo, hi = cfg.electrodes_per_subject
    return int(rng.integers(lo, hi + 1))


def _contacts_of(chans: list[ChannelDef], contacts: set[Contact] | None) -> list[bool | None]:
    """Per-channel membership in a contact set (``None`` for every channel if unknown)."""
    if contacts is None:
        return [None] * len(chans)
    return [ch.contact is not None and ch.contact in contacts for ch in chans]


def _ieeg_json(
    task: str, sfreq: float, duration: float, mains: float, counts: dict[str, int]
) -> dict:
    """An ``*_ieeg.json`` sidecar with the keys of the OpenNeuro files."""
    meta: dict[str, object] = {
        "TaskName": task,
        "Manufacturer": "n/a",
        "PowerLineFrequency": int(mains),
        "SamplingFrequency": sfreq,
        "SoftwareFilters": "n/a",
        "RecordingDuration": duration,
        "RecordingType": "continuous",
        "iEEGReference": "n/a",
    }
    for kind in ("ECOG", "SEEG", "EEG", "EOG", "ECG", "EMG", "Misc", "Trigger"):
        meta[f"{kind}ChannelCount"] = counts.get(kind, 0)
    return meta


# ----------------------------------------------------------------------------------------
# HUP (ds004100)
# ----------------------------------------------------------------------------------------

_HUP_SEEG_STEMS = (
    "LA LB LC LD LE RA RB RC RD RE LAH RAH LPH RPH LOF ROF RAFa RAFb LTP RTP LF RF".split()
)
_HUP_ECOG_STRIPS = "LF LST LIH RFR LAT LPT LMT LOT".split()
_HUP_TARGETS = "TEMPORAL FRONTAL MTL MFL FP INSULA PARIETAL".split()
_HUP_PARTICIPANTS = (
    "participant_id age sex hand outcome engel therapy implant target lesion_status age_onset"
).split()
_HUP_TYPES = dict.fromkeys(("EKG1", "EKG2"), "ecg") | dict.fromkeys("C3 C4 CZ F3 FZ".split(), "eeg")


def _hup_channels(sp: SubjectPlan, era: str, rng: np.random.Generator) -> list[ChannelDef]:
    """Channel list of a HUP subject in the naming of its era."""
    chans: list[ChannelDef] = []
    if era == "nk":  # older Nihon-Kohden ECoG exports: "EEG LG 01-Ref"
        chans += [ChannelDef("EEG EKG1-Ref", "ecg"), ChannelDef("EEG EKG2-Ref", "ecg")]
        for e in sp.electrodes:
            chans += [
                ChannelDef(f"EEG {e.stem} {n:02d}-Ref", "contact", (e.stem, n), "ecog")
                for n in range(1, e.n_contacts + 1)
            ]
        return [*chans, ChannelDef("EEG CZ-Ref", "scalp"), ChannelDef("EEG FZ-Ref", "scalp")]
    # plain ("LA1") or zero-padded ("LA01", mixed with one unpadded electrode); scalp and
    # EKG channels sorted in among the contacts, as the HUP exports list them
    unpadded = set()
    if era == "padded":
        unpadded = {sp.electrodes[int(rng.integers(len(sp.electrodes)))].stem}
    for e in sp.electrodes:
        pad = era == "padded" and e.stem not in unpadded
        chans += [
            ChannelDef(f"{e.stem}{n:02d}" if pad else f"{e.stem}{n}", "contact", (e.stem, n))
            for n in range(1, e.n_contacts + 1)
        ]
    scalp = ["C3", "CZ", "FZ"] if era == "plain" else ["C3", "C4", "CZ", "F3", "FZ"]
    chans += [ChannelDef(s, "scalp") for s in scalp]
    chans += [ChannelDef("EKG1", "ecg"), ChannelDef("EKG2", "ecg")]
    order = {name: i for i, name in enumerate(natural_sorted([c.raw for c in chans]))}
    return sorted(chans, key=lambda c: order[c.raw])


def _hup_coordinates(sp: SubjectPlan, rng: np.random.Generator) -> dict[Contact, np.ndarray]:
    """Contact coordinates in mm along straight shafts (fsaverage-like ranges)."""
    coords = {}
    for e in sp.electrodes:
        side = -1.0 if e.stem.startswith("L") else 1.0
        tip = np.array([side * rng.uniform(20, 35), rng.uniform(-40, 30), rng.uniform(-30, 20)])
        direction = np.array([side, rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)])
        direction /= np.linalg.norm(direction)
        for n in range(1, e.n_contacts + 1):
            coords[(e.stem, n)] = tip + direction * 3.5 * (n - 1)
    return coords


def _hup_channels_tsv(
    sp: SubjectPlan,
    chans: list[ChannelDef],
    label: set[Contact],
    *,
    sfreq: float,
    modality: str,
    hand_edited: bool,
) -> tuple[list[tuple[str, ...]], _Labels]:
    """Rows of a HUP channels.tsv: SOZ/resection as ``status_description`` tokens."""
    rows: list[tuple[str, ...]] = []
    bad: list[bool] = []
    soz: list[bool | None] = []
    res: list[bool | None] = []
    for ch in chans:
        is_bad = ch.role != "contact" or ch.contact in sp.flat or ch.contact in sp.noisy
        tokens = []
        if ch.contact is not None and sp.resected is not None and ch.contact in sp.resected:
            tokens.append("resect")
        if ch.contact is not None and ch.contact in label:
            tokens.append("soz")
        desc = ",".join(tokens) or "n/a"
        if hand_edited and desc == "resect,soz":
            desc = '"resect,soz"'  # the hand-edited files (HUP188) quote the pair ...
        rate = f"{int(sfreq)}" if hand_edited else repr(sfreq)  # ... and write "512"
        rows.append(
            (
                ch.raw,
                modality.upper(),  # scalp and EKG channels too, as in ds004100
                "µV",
                "0.0",
                repr(sfreq / 2),
                "StereoEEG" if modality == "seeg" else "Electrocorticography",
                rate,
                "bad" if is_bad else "good",
                desc,
            )
        )
        bad.append(is_bad)
        soz.append("soz" in tokens)
        res.append("resect" in tokens)
    return rows, _Labels(bad, soz, res)


def _hup_subject(site: _Site, i: int, *, conflict: bool) -> tuple[object, ...]:
    """Write one HUP subject; return its participants.tsv row."""
    cfg = site.cfg
    sid = f"HUP{i + 1:03d}"
    rng = site.rng(sid, "subject")
    era = ("plain", "padded", "nk")[i % 3]
    modality = "ecog" if era == "nk" else "seeg"
    sfreq = 512.0 if i % 2 == 0 else 1024.0
    n_el = _n_electrodes(rng, cfg)
    if era == "nk":
        stems = ["LG", *_pick(rng, _HUP_ECOG_STRIPS, n_el - 1)]
    else:
        stems = _pick(rng, _HUP_SEEG_STEMS, n_el)
    sp = plan_subject(
        rng,
        site=site.name,
        subject=sid,
        stems=stems,
        modality=[modality] * len(stems),
        cfg=cfg,
        grid_stems=frozenset({"LG"}),
    )
    chans = _hup_channels(sp, era, rng)
    coords = _hup_coordinates(sp, rng)
    n_ictal, n_inter = _runs(rng, cfg.ictal_runs), _runs(rng, cfg.interictal_runs)
    if conflict and n_ictal + n_inter < 2:
        n_ictal = max(n_ictal, 2)
    runs = [("ictal", k + 1) for k in range(n_ictal)]
    runs += [("interictal", k + 1) for k in range(n_inter)]
    # like HUP180: the last run of the conflict subject lists a stale SOZ set
    stale_run = runs[-1] if conflict else None
    ses = site.root / f"sub-{sid}" / "ses-presurgery"
    scans: list[tuple[str, str]] = []
    for task, run in runs:
        base = f"sub-{sid}_ses-presurgery_task-{task}_acq-{modality}_run-{run:02d}"
        rel = f"sub-{sid}/ses-presurgery/ieeg/{base}_ieeg.edf"
        rrng = site.rng(sid, f"{task}-{run}")
        dur = cfg.ictal_duration_s if task == "ictal" else cfg.interictal_duration_s
        n_samples, record = whole_records(dur, sfreq)
        duration = n_samples / sfreq
        window = None
        if task == "ictal":
            onset, offset = _seizure_window(rrng, duration, cfg, cfg.hup_onset_s)
            window = (round(onset, 3), round(offset, 3))
        planned = site.plan(
            rrng, sp, chans, key=f"{task}-{run}", sfreq=sfreq, n_samples=n_samples, window=window
        )
        label = sp.soz_label
        if (task, run) == stale_run:
            if len(label) > 1:
                label = set(sorted(label)[: min(2, len(label) - 1)])
            else:  # a single label: the stale list names one more contact instead
                label = label | {next(c for c in sp.contacts if c not in label)}
        rows, labels = _hup_channels_tsv(
            sp, chans, label, sfreq=sfreq, modality=modality, hand_edited=conflict
        )
        ieeg = ses / "ieeg"
        write_tsv(
            ieeg / f"{base}_channels.tsv",
            _CH_HEADER,
            rows,
            bom=era == "nk" or (task, run) == stale_run,
            crlf=conflict,
        )
        counts = {modality.upper(): len(chans)}
        write_json(
            ieeg / f"{base}_ieeg.json",
            _ieeg_json(task, sfreq, round(duration, 3), site.mains, counts),
        )
        markers: list[tuple[float, str]] = []
        if window is not None:
            markers = [(window[0], "sz onset"), (window[1], "sz offset")]
            ev_rows = [
                (repr(float(t)), "0.0", txt, 2 if txt == "sz onset" else 1, round(t * sfreq))
                for t, txt in markers
            ]
            write_tsv(
                ieeg / f"{base}_events.tsv", _EV_HEADER, ev_rows, bom=True, final_newline=False
            )
        elif i == 0:  # some interictal runs ship an empty events.tsv (header only)
            write_tsv(ieeg / f"{base}_events.tsv", _EV_HEADER, [], bom=True, final_newline=False)
        start = _start_datetime(rrng, 2012, 2020)
        site.emit(
            sp,
            chans,
            planned,
            rel=rel,
            task=task,
            labels=labels,
            markers=markers,
            fmt="edf",
            patient=sp.identity.edf_patient(),
            recording=edf_recording_field(start, "PENN-EMU", "EEG_TECH", "Natus_Quantum"),
            start=start,
            record=record,
        )
        stamp = f"2022-08-28T22:{35 + len(scans) // 60:02d}:{len(scans) % 60:02d}.000000Z"
        scans.append((f"ieeg/{base}_ieeg.edf", stamp))

    el_rows = []
    for ch in chans:
        xyz = coords.get(ch.contact) if ch.contact else None
        cells = [f"{v:.4f}" for v in xyz] if xyz is not None else ["n/a"] * 3
        el_rows.append((ch.raw, *cells, "n/a"))
    space = f"sub-{sid}_ses-presurgery_acq-{modality}_space-fsaverage"
    write_tsv(
        ses / "ieeg" / f"{space}_electrodes.tsv", ("name", "x", "y", "z", "size"), el_rows, bom=True
    )
    # the values are millimetres while the unit says metres: a real HUP quirk
    write_json(
        ses / "ieeg" / f"{space}_coordsystem.json",
        {
            "iEEGCoordinateSystem": "fsaverage",
            "iEEGCoordinateSystemDescription": "Defined by FreeSurfer (synthetic).",
            "iEEGCoordinateUnits": "m",
        },
    )
    write_tsv(
        ses / f"sub-{sid}_ses-presurgery_scans.tsv", ("filename", "acq_time"), scans, bom=True
    )
    outcome = "S" if sp.seizure_free else "F"
    site.finish_subject(sp, outcome, len(runs))
    return (
        f"sub-{sid}" + (" " if i == 2 else ""),  # a trailing space, like "sub-HUP151 "
        sp.age,
        sp.identity.sex,
        str(rng.choice(["R", "L"])),
        outcome,
        f"{sp.engel_class}{sp.engel_sub}",
        str(rng.choice(["RESECTION", "ABLATION"])),
        modality.upper(),
        str(rng.choice(_HUP_TARGETS)),
        str(rng.choice(["LESIONAL", "NON-LESIONAL", "n/a"])),
        sp.age_onset,
    )


def _write_bids_root(root: Path, name: str, readme: str) -> None:
    """The dataset-level files of a BIDS root: ``dataset_description.json`` and README."""
    write_json(root / "dataset_description.json",
               {"Name": name, "BIDSVersion": "1.4.0", "DatasetType": "raw",
                "Authors": ["sozstore.phantom"], "License": "CC0"})
    write_text(root / "README", readme)


def build_hup(out: Path, n_subjects: int, seed: int, cfg: PhantomConfig, truth: Truth) -> SiteBuild:
    """Write the HUP site (BIDS + EDF, labels in ``status_description``).

    Parameters
    ----------
    out : Path
        Cohort folder.
    n_subjects : int
        Number of subjects.
    seed : int
        Cohort seed.
    cfg : PhantomConfig
        Knobs.
    truth : Truth
        Collector of the truth tables.

    Returns
    -------
    SiteBuild
        The metadata are written; the EDF files are returned as jobs.
    """
    site = _Site("hup", out, seed, cfg, truth, mains_hz=60.0)
    _write_bids_root(site.root, "Phantom HUP iEEG Epilepsy Dataset",
                     "Synthetic cohort in the layout of OpenNeuro ds004100 (HUP).\n"
                     "Generated by sozstore.phantom; no real patient data.")
    write_json(
        site.root / "participants.json",
        {
            "outcome": {"Description": "S = seizure free, F = not seizure free"},
            "engel": {"Description": "Engel class and subclass, 1A-4B"},
        },
    )
    conflict_idx = min(1, n_subjects - 1)
    participants = [_hup_subject(site, i, conflict=i == conflict_idx) for i in range(n_subjects)]
    # a participant listed without any data folder (like sub-HUP132)
    orphan = f"sub-HUP{n_subjects + 1:03d}"
    participants.append(
        (orphan, 40, "F", "R", "S", "1A", "RESECTION", "SEEG", "TEMPORAL", "LESIONAL", 12)
    )
    write_tsv(
        site.root / "participants.tsv",
        _HUP_PARTICIPANTS,
        participants,
        crlf=True,
        final_newline=False,
    )
    site.write_toml(
        description="Phantom of the HUP iEEG dataset (OpenNeuro ds004100 layout)",
        layout={
            "kind": "bids",
            "root": "../raw/hup",
            "extensions": [".edf"],
            "tasks": [],
            "participants": "participants.tsv",
        },
        labels=[
            {"kind": "status_description", "soz_tokens": ["soz"], "resected_tokens": ["resect"]}
        ],
        outcome={
            "table": "participants",
            "subject_column": "participant_id",
            "outcome_column": "outcome",
            "engel_column": "engel",
        },
        types=_HUP_TYPES,
    )
    return site.build


# ----------------------------------------------------------------------------------------
# multicenter (ds003029)
# ----------------------------------------------------------------------------------------

_MC_SUBSITES = ("jh", "pt", "umf", "ummc")
_MC_CENTER = {"jh": "JHH", "pt": "NIH", "umf": "UMF", "ummc": "UMMC"}
_MC_SFREQ = {
    "jh": 999.9999999999999,
    "pt": 1000.0,
    "umf": 999.4121105232217,
    "ummc": 499.7071044492829,
}
# 2 kHz runs of ds003029 (the float noise is the real files')
_MC_HIGH_SFREQ = {"jh": 2000.0000000000002, "pt": 2000.0}
_MC_STEMS = {  # (depth electrodes, strips/grids)
    "jh": ("RAD RHD LAD LHD".split(), "ABT MBT PBT ATT PTT AST PST".split()),
    "pt": ("AD PD".split(), "G AST MST PST ATT PTT SF IF".split()),
    "umf": ("A' B' C' TP' OF' LA LH LTP LOFS".split(), []),
    # no bare "F"/"T"/"C" stems here: "F7" would read as a scalp name, and NIH writes a
    # real scalp F7 in the same site, so no site-wide type override could disambiguate
    "ummc": ([], "GP OFI TI IH AT PT SPT".split()),
}
_MC_PARTICIPANTS = (
    "participant_id age sex hand outcome engel_score ilae_score date_follow_up ethnicity "
    "years_follow_up site"
).split()
_MC_CLINICAL = (
    "PATIENT_ID SOZ_CONTACTS SPREAD_CONTACTS RESECTED_CONTACTS ENGEL_SCORE ILAE_SCORE OUTCOME "
    "CLINICAL_CENTER"
).split()
_MC_TYPES = {"EKG1": "ecg", "EKGL": "ecg", "EKGR": "ecg", "EVENT": "misc", "DC1": "misc"} | {
    "FP1": "eeg",
    "F7": "eeg",
}


def _mc_subject_id(subsite: str, k: int) -> str:
    if subsite == "jh":
        return f"jh{101 + k}"
    if subsite == "pt":
        return "pt01" if k == 0 else f"pt{k + 1}"  # NIH ids are not consistently padded
    return f"{subsite}{k + 1:03d}"


def _mc_channels(sp: SubjectPlan, subsite: str) -> list[ChannelDef]:
    chans: list[ChannelDef] = []
    if subsite in ("umf", "ummc"):
        chans.append(ChannelDef("EVENT", "event"))  # first channel at UMF/UMMC
    mod = "seeg" if subsite == "umf" else "ecog"
    for e in sp.electrodes:
        chans += [
            ChannelDef(f"{e.stem}{n}", "contact", (e.stem, n), mod)
            for n in range(1, e.n_contacts + 1)
        ]
    if subsite == "pt":
        chans += [ChannelDef("FP1", "scalp"), ChannelDef("F7", "scalp"), ChannelDef("DC01", "dc")]
    if subsite == "umf":
        chans += [ChannelDef("EKGL", "ecg"), ChannelDef("EKGR", "ecg")]
    else:
        chans.append(ChannelDef("EKG1", "ecg"))
    return chans


def _nk_time(t: float) -> str:
    """Nihon-Kohden clock stamp duplicated before each annotation (``+60.000000``)."""
    return f"+{math.ceil(t):d}.000000"


def _mc_markers(
    rng: np.random.Generator,
    subsite: str,
    window: tuple[float, float],
    sp: SubjectPlan,
    early: set[Contact],
) -> list[tuple[float, str]]:
    """Free-text markers of one ictal run in the sub-site's own conventions."""
    on, off = window
    boiler = [(0.0, "+0.000000"), (0.0, "Segment: REC START LTM+6 EEG"), (0.0, "A1+A2 OFF")]
    if subsite == "ummc":  # curated from a spreadsheet: clean
        return [(on, "sz onset"), (off, "sz offset")]
    if subsite == "umf":
        return [(on, "eeg sz start"), (off, "eeg sz end")]
    if subsite == "pt":
        where = compress_contacts(sorted(sp.soz_label))[:20]  # NK truncates to 20 chars
        marks = [
            *boiler,
            (on - rng.uniform(0.5, 2.0), "1st change"),
            (on, str(rng.choice(["onset", "Onset", "eeg onset", "EEG onset"]))),
            (on + rng.uniform(0.3, 1.5), where),
        ]
        clinical = on + rng.uniform(3.0, 10.0)
        if clinical < off - 1.0:
            marks.append((clinical, "clinical onset"))
        marks.append((off, str(rng.choice(["offset", "Offset"]))))
        return marks
    # JHH: "SZ EVENT # (PB SZ)" onsets, technologist "Z ..." notes, rare offsets; every
    # note is preceded by its NK clock stamp at the same time
    onset_text = str(rng.choice(["SZ EVENT # (PB SZ)", "SZ EVENT #(PB SZ)", "SZ EVENT # (EEG SZ)"]))
    notes = [(on, onset_text)]
    if early:
        stems = sorted({s for s, _ in early})[:2]
        notes.append((on + rng.uniform(3.0, 9.0), "Z SPREAD TO " + ", ".join(stems)))
    notes.append((on + rng.uniform(1.0, 3.0), "Z ICTAL BUILD"))
    if rng.random() < 0.4:
        notes.append((off, "Z ELECTROGRAPHIC END"))
    notes.append((off + rng.uniform(1.0, 4.0), "Z POST-ICTAL DEPRESS"))
    notes.append((max(0.5, on - rng.uniform(5.0, 20.0)), "Schedule"))
    marks = list(boiler)
    for t, text in sorted(notes):
        marks += [(t, _nk_time(t)), (t, text)]
    return marks


def _mc_channels_tsv(
    sp: SubjectPlan, chans: list[ChannelDef], subsite: str, sfreq: float
) -> tuple[list[tuple[str, ...]], list[bool]]:
    """Rows of a ds003029 channels.tsv (no SOZ anywhere) and the bad flags."""
    units = "n/a" if subsite in ("jh", "pt") else "µV"  # older files say n/a
    rows: list[tuple[str, ...]] = []
    bad: list[bool] = []
    for ch in chans:
        if ch.role in ("contact", "scalp"):  # scalp channels typed ECOG, as at NIH
            tsv_type = "SEEG" if subsite == "umf" else "ECOG"
            desc = "StereoEEG" if tsv_type == "SEEG" else "Electrocorticography"
            is_bad = ch.contact in sp.flat or ch.contact in sp.noisy
            status_desc = "excel-file-labeled" if is_bad else "n/a"
        else:
            tsv_type, desc, is_bad, status_desc = "MISC", "Miscellaneous", True, "n/a"
        rows.append(
            (
                ch.raw,
                tsv_type,
                units,
                "0.0",
                repr(sfreq / 2),
                desc,
                repr(sfreq),
                "bad" if is_bad else "good",
                status_desc,
            )
        )
        bad.append(is_bad)
    return rows, bad


def _mc_subject(site: _Site, subsite: str, sid: str, first: bool) -> tuple[tuple, tuple]:
    """Write one ds003029-like subject; return its participants and clinical-table rows."""
    cfg = site.cfg
    rng = site.rng(sid, "subject")
    sfreq = _MC_SFREQ[subsite]
    if subsite in _MC_HIGH_SFREQ and site.high_rate(sid):
        sfreq = _MC_HIGH_SFREQ[subsite]
    depth_pool, strip_pool = _MC_STEMS[subsite]
    n_el = _n_electrodes(rng, cfg)
    if subsite == "umf":
        stems = _pick(rng, depth_pool, n_el)
        if all("'" in s for s in stems) or all("'" not in s for s in stems):
            stems[-1] = "A'" if "A'" not in stems else "LA"  # primed and unprimed stems
        modality = ["seeg"] * len(stems)
    else:
        n_depth = min(len(depth_pool), int(rng.integers(0, max(1, n_el // 2) + 1)))
        stems = _pick(rng, depth_pool, n_depth) + _pick(rng, strip_pool, max(1, n_el - n_depth))
        modality = ["ecog"] * len(stems)
    sp = plan_subject(
        rng,
        site=site.name,
        subject=sid,
        stems=stems,
        modality=modality,
        cfg=cfg,
        surgery=not (subsite == "ummc" and first),  # like ummc001: not operated (NR)
        grid_stems=frozenset({"G", "GP"}),
    )
    chans = _mc_channels(sp, subsite)
    n_ictal = _runs(rng, cfg.ictal_runs)
    ieeg = site.root / f"sub-{sid}" / "ses-presurgery" / "ieeg"
    soz_c = {canonical_channel(f"{s}{n}") for s, n in sp.soz_label}
    res_c = None if sp.resected is None else {canonical_channel(f"{s}{n}") for s, n in sp.resected}
    scans, first_early = [], None
    for run in range(1, n_ictal + 1):
        base = f"sub-{sid}_ses-presurgery_task-ictal_acq-ecog_run-{run:02d}"
        rel = f"sub-{sid}/ses-presurgery/ieeg/{base}_ieeg.vhdr"
        rrng = site.rng(sid, f"ictal-{run}")
        n_samples = max(1, round(cfg.ictal_duration_s * sfreq))
        duration = n_samples / sfreq
        on, off = _seizure_window(rrng, duration, cfg)
        # annotations sit on samples: onset = sample / sfreq (hence 59.89200000000001)
        window = (round(on * sfreq) / sfreq, round(off * sfreq) / sfreq)
        planned = site.plan(
            rrng, sp, chans, key=f"ictal-{run}", sfreq=sfreq, n_samples=n_samples, window=window
        )
        if first_early is None:
            first_early = planned.early_spread
        markers = [
            (round(t * sfreq) / sfreq, txt)
            for t, txt in _mc_markers(rrng, subsite, window, sp, planned.early_spread)
        ]
        # mne-bids numbers the distinct descriptions in sorted order
        codes = {txt: k + 1 for k, txt in enumerate(sorted({txt for _, txt in markers}))}
        ev_rows = [(repr(t), "0.0", txt, codes[txt], round(t * sfreq)) for t, txt in markers]
        write_tsv(ieeg / f"{base}_events.tsv", _EV_HEADER, ev_rows, final_newline=False)
        rows, bad = _mc_channels_tsv(sp, chans, subsite, sfreq)
        write_tsv(
            ieeg / f"{base}_channels.tsv",
            _CH_HEADER,
            rows,
            final_newline=subsite not in ("jh", "ummc"),  # 47/106 real files lack it
        )
        n_misc = sum(1 for c in chans if c.role not in ("contact", "scalp"))
        main = "SEEG" if subsite == "umf" else "ECOG"
        counts = {main: len(chans) - n_misc, "Misc": n_misc}
        write_json(
            ieeg / f"{base}_ieeg.json", _ieeg_json("ictal", sfreq, duration, site.mains, counts)
        )
        start = _start_datetime(rrng, 1910, 1925)  # date-shifted like the real scans.tsv
        labels = _Labels(
            bad=bad,
            soz=[ch.canonical in soz_c for ch in chans],
            resected=[None if res_c is None else ch.canonical in res_c for ch in chans],
        )
        site.emit(
            sp,
            chans,
            planned,
            rel=rel,
            task="ictal",
            labels=labels,
            markers=markers,
            fmt="brainvision",
            start=start,
            annotations=tuple(EdfAnnotation(t, txt) for t, txt in markers),
        )
        original = {
            "jh": f"{sid}sz{run}_0001.edf",
            "pt": f"{sid.replace('pt0', 'pt')}sz{run}_0001.edf",
            "umf": "Seizure.edf" if run == 1 else f"Seizure{run}.edf",
            "ummc": f"{sid.upper()}_sz{run}_edited.edf",
        }[subsite]
        scans.append((f"ieeg/{base}_ieeg.vhdr", start.strftime("%Y-%m-%dT%H:%M:%S"), original))
    write_tsv(
        site.root / f"sub-{sid}" / "ses-presurgery" / f"sub-{sid}_ses-presurgery_scans.tsv",
        ("filename", "acq_time", "original_filename"),
        scans,
    )
    # clinical sheet: compressed contact lists; style and apostrophes vary per subject
    style = "long" if rng.random() < 0.5 else "short"
    has_primes = any("'" in s for s in stems)
    curly = has_primes and ((subsite == "umf" and first) or rng.random() < 0.5)

    def cell(contacts: set[Contact] | None) -> str:
        return compress_contacts(sorted(contacts), style=style, curly=curly) if contacts else ""

    spread = (first_early or set()) - sp.soz_label
    outcome = "NR" if sp.engel_class is None else ("S" if sp.seizure_free else "F")
    engel = -1 if sp.engel_class is None else sp.engel_class
    ilae = -1 if sp.ilae_class is None else sp.ilae_class
    center = _MC_CENTER[subsite]
    clinical = (
        sid,
        cell(sp.soz_label),
        cell(spread),
        cell(sp.resected),
        engel,
        ilae,
        outcome,
        center,
    )
    jh = subsite == "jh"  # JHH demographics are n/a in the real table
    participant = (
        f"sub-{sid}",
        "n/a" if jh else repr(float(sp.age)),
        "n/a" if jh else sp.identity.sex,
        "n/a" if jh else "R",
        outcome,
        repr(float(engel)),
        repr(float(ilae)),
        "n/a",
        "n/a",
        repr(float(rng.integers(1, 8))),
        center,
    )
    site.finish_subject(sp, outcome, n_ictal)
    return participant, clinical


def build_multicenter(
    out: Path, n_subjects: int, seed: int, cfg: PhantomConfig, truth: Truth
) -> SiteBuild:
    """Write the multicenter site (BIDS + BrainVision; SOZ in an external clinical CSV).

    Parameters
    ----------
    out : Path
        Cohort folder.
    n_subjects : int
        Number of subjects (cycling through the JHH, NIH, UMF and UMMC sub-sites).
    seed : int
        Cohort seed.
    cfg : PhantomConfig
        Knobs.
    truth : Truth
        Collector of the truth tables.

    Returns
    -------
    SiteBuild
        The metadata are written; the BrainVision files are returned as jobs.
    """
    site = _Site("multicenter", out, seed, cfg, truth, mains_hz=60.0)
    _write_bids_root(site.root, "Phantom Epilepsy-iEEG-Multicenter-Dataset",
                     "Synthetic cohort in the layout of OpenNeuro ds003029.\n"
                     "SOZ labels are only in sourcedata/clinical_data_summary.csv.")
    participants, clinical = [], []
    counters = dict.fromkeys(_MC_SUBSITES, 0)
    for i in range(n_subjects):
        subsite = _MC_SUBSITES[i % len(_MC_SUBSITES)]
        sid = _mc_subject_id(subsite, counters[subsite])
        participant, row = _mc_subject(site, subsite, sid, first=counters[subsite] == 0)
        counters[subsite] += 1
        participants.append(participant)
        clinical.append(row)
    write_tsv(site.root / "participants.tsv", _MC_PARTICIPANTS, participants, final_newline=False)
    # Excel's "CSV UTF-8" export: BOM, curly apostrophes kept
    write_csv(
        site.root / "sourcedata" / "clinical_data_summary.csv", _MC_CLINICAL, clinical, bom=True
    )
    site.write_toml(
        description="Phantom of the Epilepsy-iEEG-Multicenter dataset (ds003029 layout)",
        layout={
            "kind": "bids",
            "root": "../raw/multicenter",
            "extensions": [".vhdr"],
            "tasks": [],
            "participants": "participants.tsv",
        },
        labels=[
            {
                "kind": "external",
                "path": "../raw/multicenter/sourcedata/clinical_data_summary.csv",
                "subject_column": "PATIENT_ID",
                "soz_column": "SOZ_CONTACTS",
                "resected_column": "RESECTED_CONTACTS",
            }
        ],
        outcome={
            "table": "participants",
            "subject_column": "participant_id",
            "outcome_column": "outcome",
            "engel_column": "engel_score",
            "ilae_column": "ilae_score",
        },
        types=_MC_TYPES,
    )
    return site.build


# ----------------------------------------------------------------------------------------
# CHUL (private French site, manifest + EDF+)
# ----------------------------------------------------------------------------------------

_CHUL_PRIMED = "A' B' C' T' O' F' L' X' GC' TB' PI' OR'".split()  # left hemisphere
_CHUL_RIGHT = ["B", "C", "T"]
_CHUL_MANIFEST = (
    "file patient_id recording kind soz_contacts resected_contacts bad_channels outcome engel "
    "patient_name birth_date ipp"
).split()
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}


def _chul_markers(
    rng: np.random.Generator, window: tuple[float, float] | None, duration: float
) -> list[tuple[float, str]]:
    """French EDF+ annotations: onset/offset and clinical onset, plus free notes."""
    markers: list[tuple[float, str]] = []
    if window is not None:
        on, off = window
        markers = [
            (round(on + rng.uniform(-0.5, 0.5), 2), "Début crise"),
            (round(off, 2), "Fin crise"),
        ]
        clinical = on + rng.uniform(3.0, 10.0)
        if clinical < off - 1.0:
            markers.append((round(clinical, 2), "Crise clinique"))
        when = round(rng.uniform(1.0, max(1.5, on - 5.0)), 2)
        markers.append((when, str(rng.choice(["Stimulation", "Patient appelle", "Mouvement"]))))
    else:
        for text in ("Sommeil", "Réveil", "Repas"):
            markers.append((round(rng.uniform(1.0, duration - 1.0), 2), text))
    return sorted(markers)


def _chul_subject(site: _Site, i: int, scalp_like: set[str]) -> list[tuple]:
    """Write one CHUL subject's EDF+ files; return its manifest rows."""
    cfg = site.cfg
    pid = f"chul_{i + 1:04d}"
    rng = site.rng(pid, "subject")
    # Micromed systems record at 1024 or 2048 Hz; the second subject always at 2048
    sfreq = 2048.0 if i == 1 or site.high_rate(pid) else 1024.0
    n_el = _n_electrodes(rng, cfg)
    n_right = min(int(rng.integers(0, 3)), max(0, n_el - 1))
    stems = _pick(rng, _CHUL_PRIMED, n_el - n_right) + _pick(rng, _CHUL_RIGHT, n_right)
    sp = plan_subject(
        rng,
        site=site.name,
        subject=pid,
        stems=stems,
        modality=["seeg"] * len(stems),
        cfg=cfg,
        locale="fr",
    )
    chans = [ChannelDef(f"{s}{n}", "contact", (s, n), "seeg") for s, n in sp.contacts]
    chans.append(ChannelDef("ECG+", "ecg"))  # Micromed-style bipolar input name
    # right-sided stems "T"/"C" give contacts named like scalp electrodes (T3, C4); CHUL
    # records no scalp EEG, so the site config types those names as SEEG explicitly
    scalp_like |= {c.canonical for c in chans if c.role == "contact" and c.canonical in SCALP_10_20}
    n_ictal = _runs(rng, cfg.ictal_runs)
    recs = [("ictal", f"crise{k + 1}", cfg.ictal_duration_s) for k in range(n_ictal)]
    recs.append(("interictal", "intercritique1", cfg.chul_interictal_hours * 3600.0))
    bad_set = sp.flat | sp.noisy
    ident = sp.identity
    engel = f"{_ROMAN[sp.engel_class]}{sp.engel_sub}" if sp.engel_class else ""
    outcome = "S" if sp.seizure_free else "F"
    shared = (
        compress_contacts(sorted(sp.soz_label)),
        "" if sp.resected is None else compress_contacts(sorted(sp.resected)),
        compress_contacts(sorted(bad_set)) if bad_set else "",
        outcome,
        engel,
        ident.full_name,
        ident.birth_date.strftime("%d/%m/%Y"),
        ident.ipp,
    )
    labels = _Labels(
        bad=[ch.contact in bad_set for ch in chans],
        soz=_contacts_of(chans, sp.soz_label),
        resected=_contacts_of(chans, sp.resected),
    )
    rows = []
    for kind, recname, dur in recs:
        fname = f"{pid}_{recname}.edf"  # no names in file names
        rrng = site.rng(pid, recname)
        n_samples, record = whole_records(dur, sfreq)
        duration = n_samples / sfreq
        window = _seizure_window(rrng, duration, cfg) if kind == "ictal" else None
        planned = site.plan(
            rrng, sp, chans, key=recname, sfreq=sfreq, n_samples=n_samples, window=window
        )
        markers = _chul_markers(rrng, window, duration)
        start = _start_datetime(rrng, 2015, 2024)
        site.emit(
            sp,
            chans,
            planned,
            rel=fname,
            task=kind,
            labels=labels,
            markers=markers,
            fmt="edf+",
            patient=ident.edf_patient(),
            recording=edf_recording_field(start, f"CHUL-{ident.ipp}", "TECH", "Micromed_LTM"),
            start=start,
            annotations=tuple(EdfAnnotation(t, txt) for t, txt in markers),
            record=record,
        )
        rows.append((fname, pid, recname, kind, *shared))
    site.finish_subject(sp, outcome, len(recs))
    return rows


def build_chul(
    out: Path, n_subjects: int, seed: int, cfg: PhantomConfig, truth: Truth
) -> SiteBuild:
    """Write the CHUL site (EDF+ files and a CSV manifest, no BIDS).

    Parameters
    ----------
    out : Path
        Cohort folder.
    n_subjects : int
        Number of subjects.
    seed : int
        Cohort seed.
    cfg : PhantomConfig
        Knobs.
    truth : Truth
        Collector of the truth tables.

    Returns
    -------
    SiteBuild
        The manifest is written; the EDF+ files are returned as jobs.
    """
    site = _Site("chul", out, seed, cfg, truth, mains_hz=50.0)
    scalp_like: set[str] = set()
    manifest = [row for i in range(n_subjects) for row in _chul_subject(site, i, scalp_like)]
    write_csv(site.root / "manifest.csv", _CHUL_MANIFEST, manifest)
    site.write_toml(
        description="Phantom of a private French SEEG site (EDF+ files and a CSV manifest)",
        subject_ids="hash",
        hash_salt="phantom-chul",
        layout={
            "kind": "manifest",
            "root": "../raw/chul",
            "extensions": [".edf"],
            "manifest": "manifest.csv",
            "file_column": "file",
            "subject_column": "patient_id",
            "recording_column": "recording",
            "task_column": "kind",
            "bad_column": "bad_channels",
        },
        labels=[
            {
                "kind": "manifest",
                "soz_column": "soz_contacts",
                "resected_column": "resected_contacts",
            }
        ],
        outcome={
            "table": "manifest",
            "subject_column": "patient_id",
            "outcome_column": "outcome",
            "engel_column": "engel",
        },
        types={"ECG": "ecg", **dict.fromkeys(sorted(scalp_like), "seeg")},
    )
    return site.build


#: Site builders by key.
SITES: dict[str, Callable[[Path, int, int, PhantomConfig, Truth], SiteBuild]] = {
    "hup": build_hup,
    "multicenter": build_multicenter,
    "chul": build_chul,
}
