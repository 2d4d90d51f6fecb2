"""Fill a real BIDS metadata folder with synthetic signal files (``fill_realdata``).

The OpenNeuro iEEG datasets are public as text metadata, but their signal files are
git-annex pointers. ``fill_realdata`` writes, for every ``*_channels.tsv`` +
``*_ieeg.json`` pair, the signal file that the dataset's ``ANNEXED_FILES.tsv`` names,
with exactly the channels (names, order, count), sampling rate and duration the metadata
declare, and physiology that follows the metadata's labels (SOZ-labelled channels spike
more, ictal runs get a seizure at the annotated onset).
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path

from sozstore._logging import logger
from sozstore.phantom.config import PhantomConfig, rng_for
from sozstore.phantom.edf import EdfAnnotation, edf_recording_field, whole_records
from sozstore.phantom.naming import SCALP_10_20, canonical_channel, split_contact
from sozstore.phantom.plan import (
    ChannelDef,
    Electrode,
    SubjectPlan,
    fake_identity,
    plan_signal,
    plan_traits,
)
from sozstore.phantom.render import RenderJob, run_jobs

__all__ = ["fill_realdata", "read_bids_tsv"]

_SIGNAL_EXTS = (".edf", ".vhdr", ".bdf", ".eeg", ".fif")
_YES = {"yes", "1", "1.0", "true", "y"}
_ONSET = re.compile(r"(?i)(onset|sz event|sz start|seizure[_ ]?begin|^seizure$)")
_OFFSET = re.compile(r"(?i)(offset|sz end|electrographic end|seizure[_ ]?end|seizure off)")


def read_bids_tsv(path: Path) -> list[dict[str, str]]:
    """Read a BIDS TSV robustly (BOM, CRLF, no final newline, quoted cells, padding).

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    list of dict
        One dict per row, keys and values stripped.
    """
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(text.splitlines(), delimiter="\t", quotechar='"')
    rows = [r for r in reader if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    return [
        {h: (r[i].strip() if i < len(r) else "") for i, h in enumerate(header)} for r in rows[1:]
    ]


def _annexed(folder: Path) -> set[str]:
    path = folder / "ANNEXED_FILES.tsv"
    if not path.is_file():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if not line or line.startswith(("#", "path\t")):
            continue
        out.add(line.split("\t")[0].strip())
    return out


def _role(name: str, tsv_type: str) -> str:
    """Guess what a channel physically is from its name and declared type."""
    canon = canonical_channel(name)
    kind = tsv_type.upper()
    if canon.startswith(("EKG", "ECG")) or kind in ("ECG", "EKG"):
        return "ecg"
    if canon.startswith("EVENT") or kind in ("TRIG", "STIM", "MISC", "OTHER"):
        return "event"
    if re.fullmatch(r"DC\d+", canon):
        return "dc"
    if canon in SCALP_10_20 or kind in ("EEG", "EOG", "EMG"):
        return "scalp"
    return "contact"


def _seizure_from_events(
    path: Path, duration: float, *, free_text: bool
) -> tuple[float, float] | None:
    """First annotated seizure inside the (possibly capped) recording.

    With ``free_text`` any onset-like marker counts (ictal clips); otherwise only rows
    whose ``trial_type`` is exactly ``seizure``.
    """
    if not path.is_file():
        return None
    rows = read_bids_tsv(path)
    onset = offset = None
    for row in rows:
        text = row.get("trial_type", "")
        try:
            t = float(row.get("onset", "nan"))
        except ValueError:
            continue
        if not free_text and text.lower() != "seizure":
            continue
        if onset is None and _ONSET.search(text):
            onset = t
            dur = row.get("duration", "")
            try:
                if text.lower() == "seizure" and float(dur) > 0:
                    offset = t + float(dur)
            except ValueError:
                pass
        elif onset is not None and offset is None and _OFFSET.search(text) and t > onset:
            offset = t
    if onset is None or onset > duration - 5.0 or onset < 1.0:
        return None
    if offset is None:
        offset = onset + 60.0
    offset = min(offset, duration - 2.0)
    if offset - onset < 3.0:
        return None
    return float(onset), float(offset)


def _markers(path: Path, duration: float) -> list[tuple[float, str]]:
    """Events of events.tsv inside the recording (written into .vmrk files)."""
    if not path.is_file():
        return []
    out = []
    for row in read_bids_tsv(path):
        try:
            t = float(row.get("onset", "nan"))
        except ValueError:
            continue
        text = row.get("trial_type", "") or "n/a"
        if 0.0 <= t < duration - 1e-6:
            out.append((t, text))
    return out


def _electrode_soz(ieeg_dir: Path) -> set[str]:
    """Canonical names marked ``soz = yes`` in a session-level electrodes.tsv (RESPect)."""
    out: set[str] = set()
    for path in ieeg_dir.glob("*_electrodes.tsv"):
        for row in read_bids_tsv(path):
            if row.get("soz", "").lower() in _YES:
                out.add(canonical_channel(row.get("name", "")))
    return out


def fill_realdata(
    folder: str | Path,
    *,
    seed: int = 0,
    max_duration: float | None = None,
    config: PhantomConfig | None = None,
) -> list[Path]:
    """Write synthetic signal files into a real BIDS iEEG metadata folder.

    For every ``*_channels.tsv`` with its ``*_ieeg.json``, the signal file named in the
    dataset's ``ANNEXED_FILES.tsv`` (``.edf``, or ``.vhdr``/``.vmrk``/``.eeg``) is written
    with exactly the TSV's channel names, order and count, the JSON's
    ``SamplingFrequency`` (EDF record layout reproduces it to float precision) and
    ``RecordingDuration`` (capped at ``max_duration``). SOZ-labelled channels (a
    ``soz`` token in ``status_description``, a ``soz`` column, or ``soz = yes`` in the
    session's electrodes.tsv) spike more; ictal runs get a seizure at the annotated onset.

    Parameters
    ----------
    folder : str or Path
        A writable copy of a dataset folder (e.g. of ``realdata/ds004100``).
    seed : int
        Seed.
    max_duration : float, optional
        Cap on each recording's duration in seconds.
    config : PhantomConfig, optional
        Physiology knobs.

    Returns
    -------
    list of Path
        The signal files written (``.edf`` or ``.vhdr``), sorted.
    """
    folder = Path(folder)
    cfg = config or PhantomConfig()
    annexed = _annexed(folder)
    default_ext = ".edf"
    exts = [Path(p).suffix for p in annexed if "_ieeg." in p]
    if exts:
        default_ext = max(set(exts) & {".edf", ".vhdr"} or {".edf"}, key=exts.count)
    jobs: list[RenderJob] = []
    for ch_path in sorted(folder.rglob("*_channels.tsv")):
        prefix = ch_path.name[: -len("_channels.tsv")]
        json_path = ch_path.with_name(f"{prefix}_ieeg.json")
        if not json_path.is_file():
            logger.warning("fill_realdata: no %s, skipping %s", json_path.name, ch_path.name)
            continue
        rel_dir = ch_path.parent.relative_to(folder).as_posix()
        ext = next((e for e in _SIGNAL_EXTS if f"{rel_dir}/{prefix}_ieeg{e}" in annexed), None)
        ext = ".vhdr" if ext == ".eeg" else ext or default_ext
        if ext not in (".edf", ".vhdr"):
            logger.warning("fill_realdata: %s format not supported, writing EDF", ext)
            ext = ".edf"
        jobs.append(_fill_job(folder, ch_path, json_path, prefix, ext, seed, max_duration, cfg))
    run_jobs(jobs, n_jobs=cfg.n_jobs, desc="fill_realdata")
    return sorted(j.path for j in jobs)


def _fill_job(
    folder: Path,
    ch_path: Path,
    json_path: Path,
    prefix: str,
    ext: str,
    seed: int,
    max_duration: float | None,
    cfg: PhantomConfig,
) -> RenderJob:
    """Plan the synthetic signal of one metadata pair."""
    rel = ch_path.relative_to(folder).as_posix()
    meta = json.loads(json_path.read_text(encoding="utf-8-sig"))
    sfreq = float(meta["SamplingFrequency"])
    duration = float(meta.get("RecordingDuration") or 60.0)
    if max_duration is not None:
        duration = min(duration, float(max_duration))
    mains = meta.get("PowerLineFrequency")
    mains_hz = float(mains) if isinstance(mains, (int, float)) else 50.0
    rows = read_bids_tsv(ch_path)
    if not rows:
        raise ValueError(f"{ch_path} has no channels")
    elec_soz = _electrode_soz(ch_path.parent) | _electrode_soz(ch_path.parent.parent)

    # channels: contacts keyed by canonical stem/number so neighbours share a shaft
    chans: list[ChannelDef] = []
    seen: set[tuple[str, int]] = set()
    labelled: set[tuple[str, int]] = set()
    for k, row in enumerate(rows):
        name = row.get("name", "")
        role = _role(name, row.get("type", ""))
        if role != "contact":
            chans.append(ChannelDef(name, role))
            continue
        canon = canonical_channel(name)
        split = split_contact(canon)
        key = split if split is not None and split not in seen else (f"{canon}#{k}", 1)
        seen.add(key)
        modality = "ecog" if row.get("type", "").upper() == "ECOG" else "seeg"
        chans.append(ChannelDef(name, "contact", key, modality))
        tokens = re.split(r"[,\s]+", row.get("status_description", "").lower())
        if "soz" in tokens or row.get("soz", "").lower() in _YES or canon in elec_soz:
            labelled.add(key)

    rng = rng_for(seed, "fill", rel)
    stems: dict[str, int] = {}
    for ch in chans:
        if ch.contact is not None:
            stems[ch.contact[0]] = max(stems.get(ch.contact[0], 0), ch.contact[1])
    electrodes = [Electrode(s, n, "seeg") for s, n in stems.items()]
    contacts = [ch.contact for ch in chans if ch.contact is not None]
    soz = set(labelled)
    if not soz and contacts:  # unlabeled dataset: a small hidden onset zone anyway
        first = int(rng.integers(len(contacts)))
        soz = {c for c in contacts[first : first + 3] if c[0] == contacts[first][0]}
    subject = SubjectPlan(
        site="fill",
        subject=rel.split("/")[0],
        electrodes=electrodes,
        sigma={c: float(rng.uniform(*cfg.background_uv)) for c in contacts},
        soz_true=soz,
        soz_label=labelled,
        resected=None,
        flat=set(),
        noisy=set(),
        engel_class=None,
        engel_sub="",
        ilae_class=None,
        identity=fake_identity(rng),
        age=30,
        age_onset=10,
        traits=plan_traits(rng, electrodes, soz, cfg.physiology, cfg),
    )

    if ext == ".edf":
        n_samples, record = whole_records(duration, sfreq)
    else:
        n_samples, record = max(1, round(duration * sfreq)), None
    true_dur = n_samples / sfreq
    events = ch_path.with_name(f"{prefix}_events.tsv")
    task = re.search(r"_task-([^_]+)", prefix)
    is_ictal = (
        task is not None
        and "ictal" in task.group(1).lower()
        and "inter" not in task.group(1).lower()
    )
    # ictal runs: free-text onset/offset markers; other runs only explicit "seizure" rows
    # (RESPect marks seizures during SPES sessions with trial_type "seizure")
    window = _seizure_from_events(events, true_dur, free_text=is_ictal)
    planned = plan_signal(
        rng,
        subject,
        chans,
        sfreq=sfreq,
        n_samples=n_samples,
        mains_hz=mains_hz,
        cfg=cfg,
        seizure=window,
        seed_words=tuple(int(x) for x in rng.integers(0, 2**32, size=4)),
    )
    start = datetime(2000, 1, 1) + (datetime(2020, 1, 1) - datetime(2000, 1, 1)) * float(
        rng.random()
    )
    start = start.replace(microsecond=0)
    ident = subject.identity
    path = ch_path.with_name(f"{prefix}_ieeg{ext}")
    if ext == ".edf":
        return RenderJob(
            path=path,
            fmt="edf",
            spec=planned.spec,
            labels=tuple(c.raw for c in chans),
            patient=ident.edf_patient(),
            recording=edf_recording_field(start, "X", "X", "sozstore_phantom"),
            start=start,
            record=record,
            block_s=cfg.block_s,
        )
    markers = _markers(events, true_dur)
    return RenderJob(
        path=path,
        fmt="brainvision",
        spec=planned.spec,
        labels=tuple(c.raw for c in chans),
        start=start,
        annotations=tuple(EdfAnnotation(t, x) for t, x in markers),
        block_s=cfg.block_s,
    )
