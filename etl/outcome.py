"""Surgical outcome: raw values kept, normalised to Engel class, subclass, ILAE class and a
seizure-free flag (sites write Engel as floats ``1.0``, subclasses ``1A``, binary
``Engel_Class1``, ILAE 1-6 or S/F/NR). A site's ``outcome.value_map`` (etl/config.py)
rewrites raw values of other forms into these before parsing. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_ENGEL = re.compile(r"^\s*(?:engel\s*)?([1-4]|i{1,3}|iv)\s*[.,]?0*\s*([a-d])?\s*$", re.IGNORECASE)
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
_FREE = {"s": True, "success": True, "seizure free": True, "seizure-free": True, "sf": True,
         "f": False, "failure": False, "fail": False, "not seizure free": False, "nsf": False}


@dataclass(frozen=True)
class Outcome:
    """Normalised outcome of one subject."""

    outcome_raw: str | None
    seizure_free: bool | None
    engel_class: int | None
    engel_subclass: str | None
    ilae_class: int | None


def parse_engel(value: str | None) -> tuple[int | None, str | None]:
    """``'1A'``, ``'1.0'``, ``'IIb'`` -> (class, subclass); ``-1`` (no surgery) -> (None, None)."""
    if value is None:
        return None, None
    match = _ENGEL.match(str(value))
    if not match:
        return None, None
    num = match[1].lower()
    cls = int(num) if num.isdigit() else _ROMAN[num]
    return cls, (match[2].upper() if match[2] else None)


def parse_ilae(value: str | None) -> int | None:
    """``'1'``, ``'2.0'``, ``'ILAE 3'`` -> int in 1..6; anything else (``-1.0``) -> None."""
    if value is None:
        return None
    match = re.search(r"(-?\d+)(?:\.0+)?", str(value))
    if not match:
        return None
    n = int(match[1])
    return n if 1 <= n <= 6 else None


def _is_free_token(text: str) -> bool:
    return text.strip().lower() in _FREE or text.strip().upper() == "NR"


def is_outcome_value(text: str) -> bool:
    """Whether ``text`` is a value :func:`normalise_outcome` understands: an Engel class
    (``Engel I``, ``1A``), an ILAE class (``ILAE 2``) or an outcome token (``S``, ``F``,
    ``NR``, ``seizure free``)."""
    return (_is_free_token(text) or parse_engel(text) != (None, None)
            or (re.fullmatch(r"\s*(ilae\s*)?\d+(\.0+)?\s*", text, re.IGNORECASE) is not None
                and parse_ilae(text) is not None))


def _apply_value_map(outcome: str | None, engel: str | None, ilae: str | None,
                     value_map: Mapping[str, str]
                     ) -> tuple[str | None, str | None, str | None]:
    """The three fields with mapped values; a mapped outcome token (``S``, ``F``, ``NR``)
    from the Engel or ILAE column takes the outcome field's place when that is empty, so a
    binary ``Engel_Class1`` column can say "not Engel I" (``F``) without naming a class."""
    lookup = {raw.strip().lower(): target for raw, target in value_map.items()}

    def mapped(value: str | None) -> str | None:
        return None if value is None else lookup.get(value.strip().lower(), value)

    outcome, engel, ilae = mapped(outcome), mapped(engel), mapped(ilae)
    for value in (engel, ilae):
        if outcome is None and value is not None and _is_free_token(value):
            outcome = value
    return outcome, engel, ilae


def normalise_outcome(outcome: str | None, engel: str | None = None,
                      ilae: str | None = None, *,
                      value_map: Mapping[str, str] | None = None) -> Outcome:
    """Normalise one subject's outcome fields.

    ``seizure_free`` comes from the outcome field (S/F; ``NR`` = not resected -> None);
    failing that, from Engel class 1 or ILAE class 1-2. ``value_map`` (raw value,
    case-insensitive -> outcome text) rewrites each field first; ``outcome_raw`` keeps the
    values as written.
    """
    parts = [f"{k}={v}" for k, v in (("outcome", outcome), ("engel", engel), ("ilae", ilae))
             if v is not None]
    if value_map:
        outcome, engel, ilae = _apply_value_map(outcome, engel, ilae, value_map)
    engel_class, engel_sub = parse_engel(engel)
    ilae_class = parse_ilae(ilae)
    free = _FREE.get(outcome.strip().lower()) if outcome else None
    if free is None and (outcome is None or outcome.strip().upper() != "NR"):
        if engel_class is not None:
            free = engel_class == 1
        elif ilae_class is not None:
            free = ilae_class <= 2
    return Outcome(outcome_raw="; ".join(parts) or None, seizure_free=free,
                   engel_class=engel_class, engel_subclass=engel_sub, ilae_class=ilae_class)
