"""Names inside a store: the table names and the rule that makes a path component safe.

The paths themselves are built by :class:`sozstore.store.Store` (its module docstring
draws the whole layout); this module holds what the paths are made of, so that modules
which only need a name (``etl/discover.py``) need not import the store's readers.
"""

from __future__ import annotations

import re

CATALOG_TABLES = ("sites", "subjects", "recordings", "channels", "events", "contacts")
#: Tables under ``results/<table>/run=<run_id>/`` written by ``sozstore train``.
RESULT_TABLES = ("runs", "folds", "predictions", "metrics")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_component(text: str) -> str:
    """A path component made of safe characters only.

    Parameters
    ----------
    text : str
        Any name (a site, subject or recording id).

    Returns
    -------
    str
        ``text`` with every run of other characters replaced by ``-``, stripped of leading
        and trailing ``-`` and ``.`` (``x`` when nothing is left).
    """
    cleaned = _SAFE.sub("-", text).strip("-.")
    return cleaned or "x"
