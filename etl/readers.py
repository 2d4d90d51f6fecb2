"""Opening source recordings lazily with MNE, with errors that name the file and the problem.

Nothing from the file's header that identifies a person or a date (patient and recording
fields, birth date, measurement date) is returned: callers get channel names, types, the
sampling rate, the sample count, annotations relative to the file start and a lazy reader.

Every format MNE's ``mne.io.read_raw`` reads is opened through it (issue 12): the
extensions come from MNE's own table (:func:`supported_formats`), not a list kept here.
What a header claims is checked against the site's ``[limits]`` (sampling rate, duration)
for every format and, for EDF/BDF, against the file's size, before any sample is read; a
recording's reads stop at its time budget (issue 11: a 1-MB file whose header claimed
0.005 Hz ran for minutes and blocked the site). EDF/BDF files whose signals have different
sampling rates are read at the highest rate (MNE's reader upsamples the others) with a
warning naming those channels; discontinuous EDF+D/BDF+D files are refused.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np
from numpy.typing import NDArray

from sozstore.etl.config import LimitsConfig

#: The readers used when MNE's table of readers cannot be consulted (its location is
#: private to MNE): the formats this module dispatched before issue 12.
_FALLBACK_FORMATS = {".edf": "edf", ".bdf": "bdf", ".vhdr": "brainvision", ".fif": "fif"}


def supported_formats() -> dict[str, str]:
    """The extensions MNE's ``mne.io.read_raw`` reads, each with a format name.

    Returns
    -------
    dict of str to str
        Lower-case extension with its dot (``".edf"``, ``".fif.gz"``, ``".lay"``) to the
        lower-case name(s) of MNE's reader(s) for it, ``/``-joined where MNE tries several
        (``".dat"``: ``"curry/bci2k"``).
    """
    try:
        from mne.io._read_raw import _get_supported
        table = _get_supported()
    except (ImportError, AttributeError):  # MNE moved its private table: keep the old four
        return dict(_FALLBACK_FORMATS)
    return {ext.lower(): "/".join(name.lower() for name in readers)
            for ext, readers in table.items()}


FORMATS = supported_formats()


class RecordingError(Exception):
    """A recording cannot be ingested; ``str(err)`` is one line: the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class SourceRecording:
    """A lazily opened source recording.

    ``warnings`` holds one line per thing the caller should report about how the file was
    read (channels read at another sampling rate than they were recorded at).
    """

    path: Path
    format: str
    raw: mne.io.BaseRaw
    names: list[str]
    file_types: list[str]
    sfreq: float
    n_samples: int
    #: ``time.monotonic()`` past which :meth:`read` refuses (``None``: no time budget).
    deadline: float | None = None
    #: The time budget the deadline came from (s), for the message.
    time_budget_s: float | None = None
    #: Lines to report with the recording (not errors).
    warnings: list[str] = field(default_factory=list)

    def read(self, start: int, stop: int) -> NDArray[np.float64]:
        """Samples ``[start, stop)`` of all channels in microvolts, (n_channels, n).

        Raises
        ------
        RecordingError
            If the samples cannot be read, the file ends early, or the recording has run
            past its time budget (checked before each read: the pipeline streams in blocks
            of bounded size, so one block cannot hang).
        """
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RecordingError(self.path, f"ran past its time budget of "
                                            f"{self.time_budget_s:g} s (limits.time_budget_s) "
                                            f"at sample {start} of {self.n_samples}")
        try:
            data = self.raw.get_data(start=start, stop=stop)
        except (ValueError, OSError, EOFError) as err:
            raise RecordingError(self.path, f"cannot read samples {start}-{stop}: {err}") from None
        if data.shape[1] != stop - start:
            raise RecordingError(self.path, f"file ends early: got {data.shape[1]} of "
                                            f"{stop - start} samples at sample {start}")
        return data * 1e6

    def annotations(self) -> list[tuple[float, float, str]]:
        """Annotations as ``(onset_s from file start, duration_s, text)``."""
        ann = self.raw.annotations
        first = self.raw.first_time if ann.orig_time is not None else 0.0
        return [(float(o) - first, float(d), str(t))
                for o, d, t in zip(ann.onset, ann.duration, ann.description)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


def open_recording(path: str | Path, *, limits: LimitsConfig | None = None) -> SourceRecording:
    """Open ``path`` lazily (``preload=False``).

    Parameters
    ----------
    path : str | Path
        The recording.
    limits : LimitsConfig, optional
        The site's ``[limits]``: what a header may claim (sampling rate, duration) and the
        recording's time budget, which starts now (default: ``LimitsConfig()``).

    Returns
    -------
    SourceRecording
        The opened recording; no sample has been read.

    Raises
    ------
    RecordingError
        Missing, empty, a format MNE does not read, a BrainVision ``.eeg`` data file
        (open its ``.vhdr``), a discontinuous EDF+D/BDF+D file, unreadable header, no
        signal channels, zero samples, a file shorter than its header says, or a header
        claiming a sampling rate or duration outside ``limits`` (EDF/BDF: checked from
        the header bytes, before MNE).
    """
    limits = limits or LimitsConfig()
    started = time.monotonic()
    path = Path(path)
    ext = format_extension(path)
    if ext is None:
        raise RecordingError(path, f"unsupported format {path.suffix.lower()!r}: MNE reads "
                                   f"{', '.join(sorted(FORMATS))}")
    fmt = FORMATS[ext]
    if not path.exists():
        raise RecordingError(path, "file not found")
    if path.stat().st_size == 0:
        raise RecordingError(path, "empty file (0 bytes)")
    if ext == ".eeg" and path.with_suffix(".vhdr").exists():
        # MNE reads ".eeg" as Nihon Kohden; beside a .vhdr it is BrainVision's data file
        raise RecordingError(path, "BrainVision data file: list its .vhdr header instead")
    mixed_rates: list[str] = []
    if fmt in ("edf", "bdf"):
        mixed_rates = _check_edf_header(path, limits)
    log_level = mne.set_log_level("ERROR", return_old_level=True)
    try:
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("always")
            raw = mne.io.read_raw(path, preload=False, verbose="ERROR")
    except RecordingError:
        raise
    except Exception as err:  # noqa: BLE001 - MNE raises many types for malformed files
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecordingError(path, f"unreadable {fmt} file: {msg}") from None
    finally:
        mne.set_log_level(log_level)
    for w in caught:
        text = str(w.message)
        if "does not match the file size" in text or "truncated" in text.lower():
            raise RecordingError(path, f"truncated file: {text.splitlines()[0]}")
    if len(raw.ch_names) == 0:
        raise RecordingError(path, "no signal channels (annotations-only file?)")
    if raw.n_times == 0:
        raise RecordingError(path, "no samples")
    sfreq, n_samples = float(raw.info["sfreq"]), int(raw.n_times)
    problem = header_claim_problem(sfreq, n_samples, limits)
    if problem is not None:
        with contextlib.suppress(Exception):
            raw.close()
        raise RecordingError(path, problem)
    types = raw.get_channel_types()
    budget = limits.time_budget_s
    rec = SourceRecording(path=path, format=fmt, raw=raw, names=list(raw.ch_names),
                          file_types=list(types), sfreq=sfreq, n_samples=n_samples,
                          deadline=None if budget is None else started + budget,
                          time_budget_s=budget)
    if mixed_rates:
        rec.warnings.append(f"channels recorded at another rate than the file's {sfreq:g} Hz, "
                            f"upsampled by MNE's reader: {', '.join(mixed_rates[:8])}"
                            + (f" (+{len(mixed_rates) - 8} more)" if len(mixed_rates) > 8
                               else ""))
    return rec


def format_extension(path: str | Path) -> str | None:
    """The extension of ``path`` that names its format in :data:`FORMATS`, or ``None``.

    The longest match wins, so ``x.fif.gz`` is ``".fif.gz"`` and ``x.EEG`` is ``".eeg"``.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    for first in range(len(suffixes)):
        ext = "".join(suffixes[first:])
        if ext in FORMATS:
            return ext
    return None


def header_claim_problem(sfreq: float, n_samples: int, limits: LimitsConfig) -> str | None:
    """Why a header's sampling rate and length are not believable, or ``None``.

    Parameters
    ----------
    sfreq : float
        The sampling rate the header claims (Hz).
    n_samples : int
        The samples per channel it claims.
    limits : LimitsConfig
        The site's ``[limits]``.

    Returns
    -------
    str or None
        One phrase naming the claim and the limit (and the config key that sets it).
    """
    if not np.isfinite(sfreq) or not (limits.min_source_sfreq_hz <= sfreq
                                       <= limits.max_source_sfreq_hz):
        return (f"implausible header: sampling rate {sfreq:.6g} Hz is outside "
                f"{limits.min_source_sfreq_hz:g}-{limits.max_source_sfreq_hz:g} Hz "
                "(limits.min_source_sfreq_hz / max_source_sfreq_hz)")
    hours = n_samples / sfreq / 3600.0
    if hours > limits.max_duration_h:
        return (f"implausible header: it claims {hours:.4g} h of recording, more than "
                f"{limits.max_duration_h:g} h (limits.max_duration_h)")
    return None


def _check_edf_header(path: Path, limits: LimitsConfig) -> list[str]:
    """Sanity checks MNE does not make: version field, discontinuity, header length, data
    size, and the sampling rate and duration the header claims (from the record duration and
    the samples per record), all before MNE reads anything.

    Returns the labels of the signals with fewer samples per record than the most (MNE's
    reader upsamples them to the file's highest rate).
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(256)
    if len(head) < 256:
        raise RecordingError(path, f"truncated header ({len(head)} of 256 bytes)")
    version = head[:8]
    if version not in (b"0       ", b"\xffBIOSEMI"):
        raise RecordingError(path, f"wrong header: version field {version!r} is not EDF/BDF")
    if head[192:197] in (b"EDF+D", b"BDF+D"):
        # MNE's reader places the records end to end, so each gap would vanish
        raise RecordingError(path, f"{head[192:197].decode()} (discontinuous) file: gaps would "
                                   "be concatenated; export it as EDF+C or split it")
    try:
        header_bytes = int(head[184:192].decode("ascii").strip())
        n_records = int(head[236:244].decode("ascii").strip())
        record_s = float(head[244:252].decode("ascii").strip())
        n_signals = int(head[252:256].decode("ascii").strip())
    except ValueError:
        raise RecordingError(path, "wrong header: non-numeric header length, record count, "
                                   "record duration or signal count") from None
    if n_signals <= 0:
        raise RecordingError(path, "no signals in header")
    if header_bytes != 256 * (n_signals + 1):
        raise RecordingError(path, f"wrong header: header length {header_bytes} does not match "
                                   f"{n_signals} signals")
    if size < header_bytes:
        raise RecordingError(path, f"truncated header ({size} of {header_bytes} bytes)")
    with open(path, "rb") as fh:
        fh.seek(256 + 216 * n_signals)
        raw_counts = fh.read(8 * n_signals)
    try:
        samples = [int(raw_counts[i * 8:(i + 1) * 8].decode("ascii").strip())
                   for i in range(n_signals)]
    except ValueError:
        raise RecordingError(path, "wrong header: non-numeric samples per record") from None
    width = 3 if head[:8] == b"\xffBIOSEMI" else 2
    record_bytes = sum(samples) * width
    labels = [head_label.strip() for head_label in _labels(path, n_signals)]
    if all(lab == "EDF Annotations" for lab in labels):
        raise RecordingError(path, "no signal channels (annotations-only file)")
    signal_samples = [n for n, lab in zip(samples, labels) if lab != "EDF Annotations"]
    if not np.isfinite(record_s) or record_s <= 0:
        raise RecordingError(path, f"implausible header: record duration {record_s:g} s")
    # MNE reads every signal at the highest rate of the file
    problem = header_claim_problem(max(signal_samples) / record_s,
                                   max(n_records, 0) * max(signal_samples), limits)
    if problem is not None:
        raise RecordingError(path, problem)
    if n_records > 0 and record_bytes > 0:
        expected = header_bytes + n_records * record_bytes
        if size < expected:
            have = (size - header_bytes) // record_bytes
            raise RecordingError(path, f"truncated file: header says {n_records} records, "
                                       f"file holds {have} ({size} of {expected} bytes)")
    return [lab for n, lab in zip(samples, labels)
            if lab != "EDF Annotations" and n != max(signal_samples)]


def _labels(path: Path, n_signals: int) -> list[str]:
    with open(path, "rb") as fh:
        fh.seek(256)
        raw = fh.read(16 * n_signals)
    return [raw[i * 16:(i + 1) * 16].decode("latin-1") for i in range(n_signals)]


logging.getLogger("mne").setLevel(logging.ERROR)
