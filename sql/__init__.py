"""DuckDB named queries shipped with the package: the ``*.sql`` files beside this module.

Each file starts with a header of SQL comments::

    -- name: rate_ranking
    -- description: one line
    -- param: site VARCHAR = NULL -- restrict to one site
    -- param: top BIGINT = 10 -- contacts per patient

Parameters are bound by DuckDB (``$site``), never pasted into the SQL; every declared
parameter is bound (with its default when not given), so queries use
``CAST($site AS VARCHAR) IS NULL OR ...`` for optional filters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

_PARAM = re.compile(r"^--\s*param:\s*(\w+)\s+(\w+)\s*(?:=\s*(\S+))?\s*(?:--\s*(.*))?$")
_CASTS = {"VARCHAR": str, "BIGINT": int, "INTEGER": int, "DOUBLE": float, "BOOLEAN": None}


class NamedQueryError(ValueError):
    """A named query is unknown or got a bad parameter."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    description: str


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str

    def bind(self, given: dict[str, str]) -> dict[str, Any]:
        """Typed values for every declared parameter (defaults filled in)."""
        known = {p.name: p for p in self.params}
        unknown = set(given) - set(known)
        if unknown:
            raise NamedQueryError(f"query {self.name!r} has no parameter(s) "
                                  f"{', '.join(sorted(unknown))}; it takes "
                                  f"{', '.join(known) or 'none'}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name not in given:
                out[p.name] = p.default
                continue
            out[p.name] = _convert(p, given[p.name])
        return out


def _convert(p: Param, text: str) -> Any:
    if text.upper() == "NULL":
        return None
    if p.type == "BOOLEAN":
        if text.lower() not in ("true", "false", "1", "0"):
            raise NamedQueryError(f"parameter {p.name} must be true/false, got {text!r}")
        return text.lower() in ("true", "1")
    cast = _CASTS.get(p.type, str)
    try:
        return cast(text) if cast else text
    except ValueError:
        raise NamedQueryError(f"parameter {p.name} must be {p.type}, got {text!r}") from None


def _parse(text: str) -> NamedQuery:
    name = description = None
    params = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            break
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("-- description:"):
            description = line.split(":", 1)[1].strip()
        else:
            m = _PARAM.match(line)
            if m:
                p = Param(m[1], m[2].upper(), None, m[4] or "")
                default = None if m[3] in (None, "NULL") else _convert(p, m[3])
                params.append(Param(p.name, p.type, default, p.description))
    if not name:
        raise NamedQueryError("a named query file lacks its `-- name:` line")
    return NamedQuery(name, description or "", tuple(params), text)


def named_queries() -> dict[str, NamedQuery]:
    """All named queries shipped with the package, by name."""
    out = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".sql"):
            q = _parse(entry.read_text(encoding="utf-8"))
            out[q.name] = q
    return dict(sorted(out.items()))
