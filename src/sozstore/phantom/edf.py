"""A small streaming EDF / EDF+ writer (16-bit, one sampling rate, optional annotations).

Why our own writer: recordings are synthesised block by block and a 20-hour, 64-channel
file must be written with bounded memory; the writer converts each block to int16 data
records and appends them, patching the record count in the header at :meth:`EdfWriter.close`.
It also writes exactly the header fields the privacy tests need (an identifying EDF+
patient field, a recording field with a start date) and EDF+ annotations as TALs.

Format reference: EDF (Kemp et al. 1992) and EDF+ (Kemp & Olivan 2003),
https://www.edfplus.info/specs/edfplus.html.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = [
    "EdfAnnotation",
    "EdfSignal",
    "EdfWriter",
    "edf_date",
    "edf_record_layout",
    "edf_recording_field",
    "format_edf_number",
    "whole_records",
]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DIG_MIN, _DIG_MAX = -32768, 32767


@dataclass(frozen=True)
class EdfSignal:
    """Header of one EDF signal.

    Attributes
    ----------
    label : str
        Channel label (at most 16 ASCII characters), written verbatim.
    physical_min, physical_max : float
        Physical range mapped onto the full int16 range; values outside are clipped.
    dimension : str
        Physical dimension (``uV``).
    transducer, prefilter : str
        Free-text header fields.
    """

    label: str
    physical_min: float
    physical_max: float
    dimension: str = "uV"
    transducer: str = ""
    prefilter: str = ""


@dataclass(frozen=True)
class EdfAnnotation:
    """One EDF+ annotation.

    Attributes
    ----------
    onset : float
        Seconds from the file start.
    text : str
        Description (UTF-8 in the file, as EDF+ allows).
    duration : float or None
        Duration in seconds, omitted from the TAL when ``None``.
    """

    onset: float
    text: str
    duration: float | None = None


def format_edf_number(value: float, width: int = 8) -> str:
    """Format a number into an EDF header field of ``width`` ASCII characters.

    Parameters
    ----------
    value : float
        The number.
    width : int
        Field width.

    Returns
    -------
    str
        The most precise decimal representation that fits, without trailing zeros.

    Raises
    ------
    ValueError
        If even the integer part does not fit.
    """
    for decimals in range(width, -1, -1):
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text == "-0":
            text = "0"
        if len(text) <= width:
            return text
    raise ValueError(f"{value!r} does not fit in {width} characters")


def edf_record_layout(
    sfreq: float, *, min_record_s: float = 0.05, max_record_s: float = 10.0
) -> tuple[int, str]:
    """Choose samples-per-record and record duration that reproduce ``sfreq``.

    EDF stores the rate as ``samples_per_record / record_duration`` with the duration as
    an 8-character decimal. Rates such as 999.4121105232217 Hz (ds003029) are reachable
    only approximately; the search keeps the best candidate (relative error well below
    1e-6 for every rate seen in the public datasets), preferring durations near 1 s.

    Parameters
    ----------
    sfreq : float
        Requested sampling rate.
    min_record_s, max_record_s : float
        Range of record durations considered.

    Returns
    -------
    tuple of (int, str)
        Samples per record and the duration field text.
    """
    best: tuple[float, float, int, str] | None = None
    n_lo = max(1, math.floor(min_record_s * sfreq))
    n_hi = max(n_lo, math.ceil(max_record_s * sfreq))
    for n in range(n_lo, n_hi + 1):
        text = format_edf_number(n / sfreq)
        dur = float(text)
        if dur <= 0:
            continue
        err = abs(n / dur - sfreq) / sfreq
        # errors below 1e-12 are float noise: treat as exact, then prefer ~1 s records
        key = (max(err, 1e-12), abs(math.log(dur)), n, text)
        if best is None or key[:2] < best[:2]:
            best = key
    assert best is not None
    return best[2], best[3]


def edf_date(when: datetime) -> str:
    """Return an EDF+ date ``02-MAR-1961`` (English month, as the spec requires).

    Parameters
    ----------
    when : datetime
        The date.

    Returns
    -------
    str
        ``dd-MMM-yyyy``.
    """
    return f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d}"


def edf_recording_field(start: datetime, admin: str, technician: str, equipment: str) -> str:
    """EDF+ recording field: ``Startdate dd-MMM-yyyy admin technician equipment``.

    Parameters
    ----------
    start : datetime
        Recording start.
    admin, technician, equipment : str
        Sub-fields without spaces (readers split the field on spaces; MNE takes the date
        from it only when there are exactly five sub-fields).

    Returns
    -------
    str
        The field text.
    """
    for part in (admin, technician, equipment):
        if not part or " " in part:
            raise ValueError(f"EDF+ recording sub-field must be one word: {part!r}")
    return f"Startdate {edf_date(start)} {admin} {technician} {equipment}"


def whole_records(duration_s: float, sfreq: float) -> tuple[int, tuple[int, str]]:
    """Sample count closest to ``duration_s`` that fills whole EDF records.

    Parameters
    ----------
    duration_s : float
        Requested duration.
    sfreq : float
        Sampling rate.

    Returns
    -------
    tuple of (int, (int, str))
        Number of samples (at least one record, so nothing is padded) and the record
        layout from :func:`edf_record_layout`.
    """
    spr, text = edf_record_layout(sfreq)
    n_rec = max(1, round(duration_s / float(text)))
    return n_rec * spr, (spr, text)


def _ascii_field(text: str, width: int, name: str) -> bytes:
    """Left-justify ``text`` in a space-padded ASCII header field."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as err:
        raise ValueError(f"EDF header field {name!r} must be ASCII: {text!r}") from err
    if len(raw) > width:
        raise ValueError(f"EDF header field {name!r} longer than {width}: {text!r}")
    return raw.ljust(width, b" ")


def _tal_time(seconds: float) -> str:
    """Signed decimal onset of a TAL (``+12.5``)."""
    text = f"{seconds:.7f}".rstrip("0").rstrip(".")
    return ("+" if seconds >= 0 else "") + (text or "0")


class EdfWriter:
    """Write an EDF/EDF+ file record by record.

    Parameters
    ----------
    path : str or Path
        Output file (overwritten).
    signals : sequence of EdfSignal
        One entry per data channel, in file order.
    sfreq : float
        Sampling rate of every signal.
    patient : str
        Patient identification field (EDF+: ``code sex birthdate name``), ASCII, <= 80.
    recording : str
        Recording identification field (EDF+: ``Startdate dd-MMM-yyyy admin tech
        equipment``), ASCII, <= 80.
    start : datetime
        Start date/time for the ``dd.mm.yy`` / ``hh.mm.ss`` header fields.
    annotations : sequence of EdfAnnotation
        EDF+ annotations; each goes into the data record that covers its onset.
    plus : bool
        Write EDF+C (with an ``EDF Annotations`` signal) instead of plain EDF.
    record : tuple of (int, str), optional
        Samples per record and duration text; default from :func:`edf_record_layout`.

    Examples
    --------
    >>> with EdfWriter(path, signals, sfreq=512.0, patient=p, recording=r, start=t0) as w:
    ...     for block in blocks:
    ...         w.write(block)
    """

    def __init__(
        self,
        path: str | Path,
        signals: Sequence[EdfSignal],
        *,
        sfreq: float,
        patient: str,
        recording: str,
        start: datetime,
        annotations: Sequence[EdfAnnotation] = (),
        plus: bool = True,
        record: tuple[int, str] | None = None,
    ) -> None:
        if not signals:
            raise ValueError("an EDF file needs at least one signal")
        self.path = Path(path)
        self.signals = list(signals)
        self.sfreq = float(sfreq)
        self.plus = plus or bool(annotations)
        self.spr, self._dur_text = record if record is not None else edf_record_layout(sfreq)
        self.record_duration = float(self._dur_text)
        self.n_records = 0
        n_sig = len(self.signals)

        # physical -> digital mapping from the header text exactly as a reader parses it
        pmin = np.array([float(format_edf_number(s.physical_min)) for s in self.signals])
        pmax = np.array([float(format_edf_number(s.physical_max)) for s in self.signals])
        if np.any(pmax <= pmin):
            raise ValueError("physical_max must exceed physical_min for every signal")
        self._pmin_text = [format_edf_number(v) for v in pmin]
        self._pmax_text = [format_edf_number(v) for v in pmax]
        self._gain = ((_DIG_MAX - _DIG_MIN) / (pmax - pmin))[:, None]
        self._offset = (_DIG_MIN - pmin * self._gain[:, 0])[:, None]
        self._gain32 = self._gain.astype(np.float32)
        self._offset32 = self._offset.astype(np.float32)

        # annotations: bucket them per record; the TAL signal gets the size of the
        # fullest record (every record starts with its time-keeping TAL)
        self._ann_by_record: dict[int, bytes] = {}
        for ann in sorted(annotations, key=lambda a: a.onset):
            rec = max(0, math.floor(ann.onset / self.record_duration + 1e-9))
            tal = _tal_time(ann.onset)
            if ann.duration is not None:
                tal += "\x15" + format_edf_number(ann.duration, 16)
            tal += "\x14" + ann.text + "\x14\x00"
            self._ann_by_record[rec] = self._ann_by_record.get(rec, b"") + tal.encode("utf-8")
        longest_keeper = len(f"{_tal_time(1e7)}\x14\x14\x00")
        longest_extra = max((len(v) for v in self._ann_by_record.values()), default=0)
        self._ann_bytes = 0
        if self.plus:
            self._ann_bytes = 2 * math.ceil((longest_keeper + longest_extra + 2) / 2)
        self._rec_bytes = 2 * self.spr * n_sig + self._ann_bytes
        self._pending = np.zeros((n_sig, 0), dtype=np.int16)
        self._last = np.zeros((n_sig, 1), dtype=np.int16)
        header = self._header(patient, recording, start)  # validate before opening
        self._fh = open(self.path, "wb")  # closed by close() / __exit__
        self._fh.write(header)

    # -- header ---------------------------------------------------------------------------
    def _header(self, patient: str, recording: str, start: datetime) -> bytes:
        ns = len(self.signals) + (1 if self.plus else 0)
        sig = list(self.signals)
        labels = [s.label for s in sig]
        trans = [s.transducer for s in sig]
        dims = [s.dimension for s in sig]
        pmins, pmaxs = list(self._pmin_text), list(self._pmax_text)
        dmins, dmaxs = [str(_DIG_MIN)] * len(sig), [str(_DIG_MAX)] * len(sig)
        prefs = [s.prefilter for s in sig]
        sprs = [str(self.spr)] * len(sig)
        if self.plus:
            labels.append("EDF Annotations")
            trans.append("")
            dims.append("")
            pmins.append("-1")
            pmaxs.append("1")
            dmins.append(str(_DIG_MIN))
            dmaxs.append(str(_DIG_MAX))
            prefs.append("")
            sprs.append(str(self._ann_bytes // 2))
        head = b"".join(
            [
                _ascii_field("0", 8, "version"),
                _ascii_field(patient, 80, "patient"),
                _ascii_field(recording, 80, "recording"),
                _ascii_field(start.strftime("%d.%m.%y"), 8, "startdate"),
                _ascii_field(start.strftime("%H.%M.%S"), 8, "starttime"),
                _ascii_field(str(256 * (ns + 1)), 8, "header bytes"),
                _ascii_field("EDF+C" if self.plus else "", 44, "reserved"),
                _ascii_field("-1", 8, "n records"),  # patched in close()
                _ascii_field(self._dur_text, 8, "record duration"),
                _ascii_field(str(ns), 4, "n signals"),
            ]
        )
        for values, width, name in (
            (labels, 16, "label"),
            (trans, 80, "transducer"),
            (dims, 8, "dimension"),
            (pmins, 8, "physical min"),
            (pmaxs, 8, "physical max"),
            (dmins, 8, "digital min"),
            (dmaxs, 8, "digital max"),
            (prefs, 80, "prefilter"),
            (sprs, 8, "samples per record"),
            ([""] * ns, 32, "reserved"),
        ):
            head += b"".join(_ascii_field(v, width, name) for v in values)
        return head

    # -- data -----------------------------------------------------------------------------
    def write(self, block: np.ndarray) -> None:
        """Append samples of every signal.

        Parameters
        ----------
        block : numpy.ndarray, shape (n_signals, n)
            Physical values; any length (partial records are buffered).
        """
        if block.shape[0] != len(self.signals):
            raise ValueError(f"expected {len(self.signals)} rows, got {block.shape[0]}")
        if block.shape[1] == 0:
            return
        # float32 is exact enough here: |digital| < 2**15 leaves 8 fractional bits
        dig = block.astype(np.float32, copy=True)
        dig *= self._gain32
        dig += self._offset32
        np.rint(dig, out=dig)
        np.clip(dig, _DIG_MIN, _DIG_MAX, out=dig)
        data = dig.astype(np.int16)
        if self._pending.shape[1]:
            data = np.concatenate([self._pending, data], axis=1)
        n_full = data.shape[1] // self.spr
        if n_full:
            self._write_records(data[:, : n_full * self.spr])
        self._pending = data[:, n_full * self.spr :]
        self._last = data[:, -1:]

    def _write_records(self, data: np.ndarray) -> None:
        n_sig = data.shape[0]
        k = data.shape[1] // self.spr
        records = np.zeros((k, self._rec_bytes), dtype=np.uint8)
        # (n_sig, k, spr) -> (k, n_sig, spr): each record holds every signal in turn
        samples = data.reshape(n_sig, k, self.spr).transpose(1, 0, 2).astype("<i2")
        records[:, : 2 * self.spr * n_sig] = samples.reshape(k, -1).view(np.uint8)
        if self.plus:
            base = 2 * self.spr * n_sig
            for i in range(k):
                rec = self.n_records + i
                tal = f"{_tal_time(rec * self.record_duration)}\x14\x14\x00".encode("ascii")
                tal += self._ann_by_record.get(rec, b"")
                records[i, base : base + len(tal)] = np.frombuffer(tal, dtype=np.uint8)
        self._fh.write(records.tobytes())
        self.n_records += k

    def close(self) -> None:
        """Pad the last partial record (repeating the last sample), fix the header, close."""
        if self._fh.closed:
            return
        if self._pending.shape[1]:
            pad = np.repeat(self._last, self.spr - self._pending.shape[1], axis=1)
            self._write_records(np.concatenate([self._pending, pad], axis=1))
            self._pending = self._pending[:, :0]
        lost = [r for r in self._ann_by_record if r >= self.n_records]
        if lost:
            raise ValueError(f"annotations after the end of {self.path.name} (records {lost})")
        self._fh.seek(236)
        self._fh.write(_ascii_field(str(self.n_records), 8, "n records"))
        self._fh.close()

    def __enter__(self) -> EdfWriter:
        """Return the writer."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the file (also on error, so no handle leaks)."""
        self.close()
