"""Shared parameter documentation of the ETL and feature functions, written once.

Builds on :mod:`sozstore.store._docs`: a docstring names an entry as ``%(config)s`` on a
line of its own, and :data:`fill_doc` replaces it with the entry indented like that line.
The entries below are the ETL's own (the site config, parallelism); ``%(store)s`` and the
entries the whole package shares (``site``, ``subject``, ``progress``, ``verbose`` ...) are
the store's. A name is defined in one of the two tables, never in both.
"""

from __future__ import annotations

from sozstore.store import _docs as store_docs

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

#: Fills the ETL's entries and the store's (:func:`sozstore.store._docs.make_fill_doc`, which
#: refuses a name defined in both tables).
fill_doc = store_docs.make_fill_doc(DOCDICT)
