"""Byte-exact text writers: the quirks of real metadata files are the point.

Real BIDS sidecars differ in ways an ETL must survive (UTF-8 BOMs, CRLF line endings, a
missing final newline, literally quoted cells). These helpers make each quirk an explicit
argument so the site writers can reproduce them on purpose.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_csv", "write_json", "write_text", "write_tsv"]


def write_text(
    path: Path,
    text: str,
    *,
    bom: bool = False,
    crlf: bool = False,
    final_newline: bool = True,
) -> int:
    r"""Write text with explicit BOM / line-ending / final-newline choices.

    Parameters
    ----------
    path : Path
        Output file (parents are created).
    text : str
        Content with ``\n`` line breaks and no trailing newline.
    bom : bool
        Prefix a UTF-8 byte-order mark.
    crlf : bool
        Use ``\r\n`` line endings.
    final_newline : bool
        End the file with a line break.

    Returns
    -------
    int
        Bytes written.
    """
    text = text.rstrip("\n")
    if final_newline:
        text += "\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def write_tsv(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    bom: bool = False,
    crlf: bool = False,
    final_newline: bool = True,
) -> int:
    """Write a tab-separated table verbatim (cells are ``str()``-ed, never quoted).

    Parameters
    ----------
    path : Path
        Output file.
    header : sequence of str
        Column names.
    rows : sequence of sequences
        Cells; a caller that wants a quoted cell passes the quotes in the string.
    bom, crlf, final_newline : bool
        See :func:`write_text`.

    Returns
    -------
    int
        Bytes written.
    """
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in row) for row in rows]
    return write_text(path, "\n".join(lines), bom=bom, crlf=crlf, final_newline=final_newline)


def write_csv(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    bom: bool = False,
    crlf: bool = False,
) -> int:
    """Write a comma-separated table with minimal quoting (as spreadsheets export).

    Parameters
    ----------
    path : Path
        Output file.
    header : sequence of str
        Column names.
    rows : sequence of sequences
        Cells (``None`` becomes an empty cell).
    bom, crlf : bool
        See :func:`write_text`.

    Returns
    -------
    int
        Bytes written.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if c is None else c for c in row])
    return write_text(path, buf.getvalue(), bom=bom, crlf=crlf)


def write_json(path: Path, obj: object) -> int:
    """Write a JSON sidecar indented like the OpenNeuro files (4 spaces, UTF-8).

    Parameters
    ----------
    path : Path
        Output file.
    obj : object
        JSON-serialisable content.

    Returns
    -------
    int
        Bytes written.
    """
    return write_text(path, json.dumps(obj, indent=4, ensure_ascii=False), final_newline=False)
