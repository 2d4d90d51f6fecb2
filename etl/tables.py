"""Reading the small text tables of real datasets (TSV/CSV), the way they really are.

Handles a UTF-8 BOM at the start (else the first column's name starts with U+FEFF), CRLF line
endings and a missing final newline, quoted cells (``"resect,soz"``) and trailing whitespace
in ids (``sub-HUP151 ``); values stay strings, ``n/a`` becomes ``None``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

NA_VALUES = frozenset({"", "n/a", "na", "nan", "none", "null"})


class TableError(ValueError):
    """A metadata table could not be read; the message names the file."""


def clean(value: str | None) -> str | None:
    """Strip a cell; ``n/a`` and empty cells become ``None``."""
    if value is None:
        return None
    value = value.strip()
    return None if value.lower() in NA_VALUES else value


#: Columns whose cells are identifiers, never missing-value markers: ds003029 sub-pt01 has a
#: channel literally named ``N/A``.
VERBATIM_COLUMNS = frozenset({"name"})


def read_rows(path: str | Path, *, delimiter: str | None = None) -> list[dict[str, str | None]]:
    """Rows of a TSV or CSV file as dicts of cleaned strings.

    Parameters
    ----------
    path : str | Path
        The file. ``delimiter`` defaults to tab for ``.tsv`` and comma otherwise.

    Notes
    -----
    Cells of :data:`VERBATIM_COLUMNS` are only stripped (an empty one becomes ``None``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TableError(f"{path}: cannot read ({err.strerror})") from None
    problem = encoding_problem(data)
    if problem is not None:
        raise TableError(f"{path}: {problem}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # legacy clinical exports in Latin-1 / cp1252 (`µV`): every byte decodes
        text = data.decode("latin-1")
    sep = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"')
    try:
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as err:
        raise TableError(f"{path}: not a valid table ({err})") from None
    if not rows:
        return []
    header = [h.strip().lstrip("\ufeff") for h in rows[0]]
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise TableError(f"{path}: line {i} has {len(row)} cells, header has {len(header)}")
        row = row + [""] * (len(header) - len(row))
        out.append({h: (v.strip() or None) if h in VERBATIM_COLUMNS else clean(v)
                    for h, v in zip(header, row)})
    return out


#: Byte-order marks of encodings a text table must not be in (UTF-32 before UTF-16: the
#: UTF-32-LE mark starts with the UTF-16-LE one).
_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
                 (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE"))


def encoding_problem(data: bytes) -> str | None:
    """Why ``data`` is not a UTF-8 (or Latin-1) text table, or ``None``.

    BIDS tables are UTF-8. A UTF-16 or UTF-32 file (Excel's "Unicode text" export) read as
    Latin-1 would become cells full of NUL characters, so a channels.tsv would seem to
    have "rows without a name"; a binary file (an .xlsx renamed .tsv) likewise.

    Parameters
    ----------
    data : bytes
        The file's bytes.

    Returns
    -------
    str or None
        One phrase naming the encoding found and what to do.
    """
    for bom, name in _FOREIGN_BOMS:
        if data.startswith(bom):
            return f"encoded as {name} (byte-order mark {bom.hex(' ')}); save it as UTF-8"
    if b"\x00" in data[:65536]:
        return ("not a UTF-8 text table (NUL bytes: UTF-16 without a byte-order mark, or a "
                "binary file); save it as UTF-8 text")
    return None


def strip_bids_prefix(label: str | None, prefix: str = "sub-") -> str | None:
    """``'sub-HUP151 '`` -> ``'HUP151'``."""
    if label is None:
        return None
    label = label.strip()
    return label[len(prefix):] if label.startswith(prefix) else label
