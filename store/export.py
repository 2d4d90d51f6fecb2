"""Query results as CSV or JSON text, every column type included.

``sozstore query --format csv|json`` may return any type DuckDB has: lists, structs, maps,
binary, intervals, unions, 128-bit integers. Each value becomes plain JSON data:

* lists (and fixed-size lists) become JSON arrays, structs JSON objects, maps JSON objects
  when every key is text (otherwise arrays of ``[key, value]`` pairs);
* binary (``BLOB``, ``BIT``) becomes base64 text;
* decimals become integers when whole (DuckDB's ``sum`` of integers is a 128-bit
  integer, a ``decimal128(38, 0)`` in Arrow) and floats otherwise;
* dates and times become text as ``str`` writes them (``2024-01-02 03:04:05``), intervals
  ``{"months": m, "days": d, "nanoseconds": n}``, durations seconds;
* floats stay floats, NaN and infinities included (written as Python's ``json`` writes
  them).

In CSV, a column of lists, structs, maps or unions holds that JSON text; a binary column
holds base64 text; other values are written as in JSON (``true``/``false``, empty for
NULL). A value none of this covers stops the export with :class:`ExportError` naming the
column and its type.

The functions are pure: Arrow table in, text out.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

#: JSON-ready values: what :func:`json.dumps` writes without help.
JsonValue = Any

_FORMATS = ("csv", "json")


class ExportError(ValueError):
    """A result column cannot be written in the asked format; the message names it."""


def _decimal(value: Decimal) -> int | float:
    if value.is_finite() and value == value.to_integral_value():
        return int(value)
    return float(value)


def _interval(value: Any) -> dict[str, int]:
    return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}


def _binary(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _same(value: Any) -> Any:
    return value


def _text(value: Any) -> str:
    return str(value)


def _seconds(value: dt.timedelta) -> float:
    return value.total_seconds()


def _any_value(value: Any) -> JsonValue:
    """A JSON-ready copy of a value whose Arrow type did not say its form (a union's or an
    extension type's value).

    Raises
    ------
    TypeError
        For a kind of value not listed in the module's docstring.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _binary(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dict):
        return {str(k): _any_value(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "nanoseconds"):
        return _interval(value)
    if isinstance(value, (list, tuple)):
        return [_any_value(v) for v in value]
    if isinstance(value, dt.timedelta):
        return _seconds(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time, uuid.UUID)):
        return str(value)
    raise TypeError(f"no JSON form for a {type(value).__name__} value")


def _converter(kind: pa.DataType) -> Callable[[Any], JsonValue]:
    """How to make a JSON-ready value of one (non-NULL) value of Arrow type ``kind``, as
    :meth:`pyarrow.Array.to_pylist` gives it.

    Raises
    ------
    TypeError
        For a type not listed in the module's docstring.
    """
    t = pa.types
    if t.is_dictionary(kind):
        return _converter(kind.value_type)
    if (t.is_null(kind) or t.is_boolean(kind) or t.is_integer(kind) or t.is_floating(kind)
            or t.is_string(kind) or t.is_large_string(kind) or t.is_string_view(kind)):
        return _same
    if (t.is_binary(kind) or t.is_large_binary(kind) or t.is_fixed_size_binary(kind)
            or t.is_binary_view(kind)):
        return _binary
    if t.is_decimal(kind):
        return _decimal
    if t.is_interval(kind):
        return _interval
    if t.is_duration(kind):
        return _seconds
    if t.is_temporal(kind):  # dates, times, timestamps (durations and intervals above)
        return _text
    if t.is_map(kind):
        key, item = _converter(kind.key_type), _nullable(_converter(kind.item_type))
        textual = t.is_string(kind.key_type) or t.is_large_string(kind.key_type)

        def entries(value: list[tuple[Any, Any]]) -> JsonValue:
            if textual:
                return {k: item(v) for k, v in value}
            return [[key(k), item(v)] for k, v in value]
        return entries
    if (t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind)
            or t.is_list_view(kind) or t.is_large_list_view(kind)):
        inner = _nullable(_converter(kind.value_type))
        return lambda value: [inner(v) for v in value]
    if t.is_struct(kind):
        fields = [(kind.field(i).name, _nullable(_converter(kind.field(i).type)))
                  for i in range(kind.num_fields)]
        return lambda value: {name: convert(value[name]) for name, convert in fields}
    if t.is_union(kind) or isinstance(kind, pa.ExtensionType):
        return _any_value
    raise TypeError(f"no JSON form for type {kind}")


def _nullable(convert: Callable[[Any], JsonValue]) -> Callable[[Any], JsonValue]:
    return lambda value: None if value is None else convert(value)


def _column_values(table: pa.Table, name: str, index: int,
                   finish: Callable[[JsonValue], Any] = _same) -> list[Any]:
    """The JSON-ready values of column ``index`` (named ``name``), each passed through
    ``finish``; :class:`ExportError` naming the column when it has no such form."""
    column = table.column(index)
    try:
        convert = _nullable(_converter(column.type))
        return [finish(convert(v)) for v in column.to_pylist()]
    except (TypeError, ValueError, KeyError, NotImplementedError, pa.ArrowException) as err:
        raise ExportError(f"cannot write column {name!r} of type {column.type}: {err}"
                          ) from None


def to_records(table: pa.Table) -> list[dict[str, JsonValue]]:
    """The rows of ``table`` as JSON-ready dicts (see the module's docstring).

    Parameters
    ----------
    table : pyarrow.Table
        A query's result.

    Returns
    -------
    list of dict
        One dict per row, column name to value.

    Raises
    ------
    ExportError
        When a column holds values with no JSON form, or two columns share a name.
    """
    names = table.column_names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ExportError(f"column name(s) {', '.join(map(repr, twice))} appear more than "
                          "once; give each column its own name (AS ...)")
    columns = [_column_values(table, name, i) for i, name in enumerate(names)]
    return [dict(zip(names, row)) for row in zip(*columns)]


def json_text(table: pa.Table) -> str:
    """``table`` as a JSON array of row objects (one key per line), ending in a newline.

    Raises
    ------
    ExportError
        As :func:`to_records`.
    """
    return json.dumps(to_records(table), indent=1) + "\n"


def _csv_cell(value: JsonValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def csv_text(table: pa.Table) -> str:
    """``table`` as CSV with a header line; nested values as compact JSON text, binary as
    base64 text (see the module's docstring).

    Raises
    ------
    ExportError
        When a column holds values with no text form.
    """
    names = table.column_names
    columns = [_column_values(table, name, i, _csv_cell) for i, name in enumerate(names)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*columns))
    return buffer.getvalue()


def export_text(table: pa.Table, fmt: str) -> str:
    """``table`` as ``csv`` or ``json`` text.

    Parameters
    ----------
    table : pyarrow.Table
        A query's result.
    fmt : str
        ``csv`` or ``json``.

    Returns
    -------
    str
        The text, ending in a newline.

    Raises
    ------
    ExportError
        For another format, or a column that cannot be written.
    """
    if fmt == "csv":
        return csv_text(table)
    if fmt == "json":
        return json_text(table)
    raise ExportError(f"cannot export as {fmt!r} (one of {', '.join(_FORMATS)})")


def _polars_cannot_import(kind: pa.DataType) -> bool:
    """Whether polars (1.x, ``pl.from_arrow``) refuses an Arrow type: intervals and unions,
    also inside a list or struct."""
    t = pa.types
    if t.is_interval(kind) or t.is_union(kind):
        return True
    if (t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind)
            or t.is_list_view(kind) or t.is_large_list_view(kind)):
        return _polars_cannot_import(kind.value_type)
    if t.is_map(kind):
        return _polars_cannot_import(kind.key_type) or _polars_cannot_import(kind.item_type)
    if t.is_struct(kind):
        return any(_polars_cannot_import(kind.field(i).type) for i in range(kind.num_fields))
    return False


def for_polars(table: pa.Table) -> pa.Table:
    """``table`` with every column polars cannot import (intervals, unions, and lists or
    structs of them) replaced by its CSV text (JSON text for nested values), for the
    terminal table; other columns are kept as they are.

    Raises
    ------
    ExportError
        When such a column has no text form.
    """
    for i, name in enumerate(table.column_names):
        if _polars_cannot_import(table.column(i).type):
            cells = _column_values(table, name, i, _csv_cell)
            table = table.set_column(i, name, pa.array(cells, pa.string()))
    return table
