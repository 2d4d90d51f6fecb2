"""Shared parameter documentation of the ETL and feature functions, written once.

Builds on :mod:`sozstore.store._docs`: a docstring names an entry as ``%(config)s`` on a
line of its own, and :func:`fill_doc` replaces it with the entry indented like that line.
The entries below are the ETL's own (the site config, parallelism); ``%(store)s`` and the
entries the whole package shares (``site``, ``subject``, ``progress``, ``verbose`` ...) are
the store's, filled by :func:`sozstore.store._docs.fill_doc`, to which this one hands the
docstring on. A name is defined in one of the two tables, never in both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from sozstore.store import _docs as store_docs

_Documented = TypeVar("_Documented", bound=Callable[..., object])

#: Parameter entries by name (numpydoc: the first line unindented, the text under it
#: indented by four spaces).
DOCDICT: dict[str, str] = {
    "config": (
        "config : SiteConfig\n"
        "    The site's validated config (:func:`~sozstore.etl.config.load_site_config`)."
    ),
    "workers": (
        "workers : int\n"
        "    Recordings processed in parallel, one spawned process each (1: one after the\n"
        "    other, in this process)."
    ),
}

_ENTRY = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def _indented(match: re.Match[str]) -> str:
    name = match["name"]
    if name not in DOCDICT:
        return match[0]  # a store entry (or an unknown one): store_docs.fill_doc's to fill
    indent = match["indent"]
    return "\n".join(indent + line if line else line for line in DOCDICT[name].splitlines())


def fill_doc(obj: _Documented) -> _Documented:
    """Replace ``%(name)s`` lines of ``obj``'s docstring by the shared entries.

    The ETL's entries (:data:`DOCDICT`) first, then the store's
    (:func:`sozstore.store._docs.fill_doc`, which rejects names neither knows).

    Parameters
    ----------
    obj : callable
        A function or class whose docstring names shared entries.

    Returns
    -------
    callable
        ``obj`` itself, its docstring filled.
    """
    if obj.__doc__:
        obj.__doc__ = _ENTRY.sub(_indented, obj.__doc__)
    return store_docs.fill_doc(obj)
