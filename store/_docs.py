"""Shared parameter documentation, written once and filled into docstrings (after MNE's
``fill_doc``): a docstring names an entry as ``%(store)s`` on a line of its own, and
:func:`fill_doc` replaces it with the entry indented like that line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

_Documented = TypeVar("_Documented", bound=Callable[..., object])

#: Parameter entries by name (numpydoc: the first line unindented, the text under it
#: indented by four spaces).
DOCDICT: dict[str, str] = {
    "store": (
        "store : Store | str | os.PathLike\n"
        "    The store: a :class:`~sozstore.store.Store`, or its root folder, opened with\n"
        "    :meth:`Store.open <sozstore.store.Store.open>` (a Store passes through as it is)."
    ),
    "run_id": (
        "run_id : str\n"
        "    A stored evaluation run (``<model>-<UTC time>-<hash>``; ``sozstore query\n"
        "    run_comparison`` lists them), the ``run_id`` column of the result tables."
    ),
    "site": (
        "site : str\n"
        "    A site's name, as in the catalog's ``site`` column (the ``name`` of its site\n"
        "    config)."
    ),
    "subject": (
        "subject : str\n"
        "    A subject's id within its site, as in the catalog's ``subject`` column."
    ),
    "keys": (
        "keys : list of str\n"
        "    Patients as ``site/subject`` keys (the ``key`` column of the models' tables)."
    ),
    "seed": (
        "seed : int\n"
        "    Seed of every random draw made here: the same seed and inputs give the same\n"
        "    result."
    ),
    "progress": (
        "progress : bool\n"
        "    Show progress bars on stderr; they never change a result."
    ),
    "verbose": (
        "verbose : bool\n"
        "    Log progress details (the package logger at INFO; see\n"
        "    :func:`sozstore._logging.set_log_level`)."
    ),
}

_ENTRY = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def make_fill_doc(extra: Mapping[str, str] | None = None
                  ) -> Callable[[_Documented], _Documented]:
    """A ``fill_doc`` over :data:`DOCDICT` and the entries of ``extra`` (another package's own,
    e.g. the ETL's ``config``); a name defined in both tables is an error.

    Parameters
    ----------
    extra : mapping of str to str, optional
        More entries, numpydoc formatted like :data:`DOCDICT`'s.

    Returns
    -------
    callable
        The decorator.
    """
    extra = dict(extra or {})
    both = set(extra) & set(DOCDICT)
    if both:
        raise ValueError(f"shared documentation defined twice: {sorted(both)}")
    entries = {**DOCDICT, **extra}

    def indented(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in entries:
            raise KeyError(f"no shared documentation for %({name})s; known: {sorted(entries)}")
        indent = match["indent"]
        return "\n".join(indent + line if line else line for line in entries[name].splitlines())

    def fill(obj: _Documented) -> _Documented:
        """Replace ``%(name)s`` lines of ``obj``'s docstring by the shared entries.

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
            obj.__doc__ = _ENTRY.sub(indented, obj.__doc__)
        return obj

    return fill


#: Fills :data:`DOCDICT`'s entries (a docstring names one as ``%(store)s`` on its own line).
fill_doc = make_fill_doc()
