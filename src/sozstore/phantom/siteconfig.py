"""Site configurations for the ETL (``OUT/sites/<site>.toml``) and the event rules.

The same rule tables are used twice: rendered into each site's TOML, and applied by the
generator to every marker it writes to compute the ``kind`` column of
``truth/events.parquet``. Truth therefore says exactly what a correct implementation of
the TOML contract (first matching ``re.search`` rule wins, ignored texts dropped,
unmatched texts ``unknown``) must produce.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IGNORE_PATTERNS", "SITE_RULES", "EventRule", "classify_event", "render_site_toml",
           "write_manifest_site"]


@dataclass(frozen=True)
class EventRule:
    """One ``[[events.rules]]`` entry.

    Attributes
    ----------
    name : str
        Rule name (reported by the ETL as provenance).
    kind : str
        ``onset``, ``offset``, ``clinical_onset`` or ``note``.
    pattern : str
        Python regular expression, matched with ``re.search`` on the stripped text.
    """

    name: str
    kind: str
    pattern: str


#: Nihon-Kohden boilerplate that is not an event (clock stamps, montage, reference).
IGNORE_PATTERNS: tuple[str, ...] = (r"^\+\d+(\.\d+)?$", r"^Segment: REC START", r"^A1\+A2 OFF$")

#: Event rules per site, in priority order.
SITE_RULES: dict[str, tuple[EventRule, ...]] = {
    "hup": (
        EventRule("hup-sz-onset", "onset", r"(?i)^sz onset$"),
        EventRule("hup-sz-offset", "offset", r"(?i)^sz offset$"),
    ),
    "multicenter": (
        # clinical onsets first: "clinical onset" must not fall into the generic onset rule
        EventRule("nih-clinical-onset", "clinical_onset", r"(?i)^clin\w*\s+(onset|osnet)"),
        EventRule("nih-onset", "onset", r"(?i)^(eeg\s+|definite\s+|ictal\s+)?onset\b"),
        EventRule("nih-offset", "offset", r"(?i)^(offset|seizure off|sz end)\b"),
        EventRule("jhh-onset", "onset", r"(?i)^SZ EVENT\s*#"),
        EventRule("jhh-offset", "offset", r"(?i)^Z ELECTROGRAPHIC END"),
        EventRule("ummc-onset", "onset", r"(?i)^sz onset\b"),
        EventRule("ummc-offset", "offset", r"(?i)^sz offset\b"),
        EventRule("umf-onset", "onset", r"(?i)^eeg sz start$"),
        EventRule("umf-offset", "offset", r"(?i)^eeg sz end$"),
        # JHH technologist notes are "Z <TEXT>" (after the offset rule above)
        EventRule("jhh-note", "note", r"^Z [A-Z]"),
    ),
    "chul": (
        EventRule("chul-onset", "onset", r"(?i)^d[ée]but\s+(de\s+)?crise"),
        EventRule("chul-offset", "offset", r"(?i)^fin\s+(de\s+)?crise"),
        EventRule("chul-clinical-onset", "clinical_onset", r"(?i)^crise\s+clinique"),
        EventRule("chul-note", "note", r"(?i)^(stimulation|sommeil|r[ée]veil)"),
    ),
}


def classify_event(site: str, text: str) -> str | None:
    """Apply a site's rules to a marker text.

    Parameters
    ----------
    site : str
        Site key.
    text : str
        Raw marker text.

    Returns
    -------
    str or None
        The kind of the first matching rule, ``unknown`` if none matches, ``None`` if the
        text is ignorable boilerplate.
    """
    stripped = text.strip()
    if any(re.search(p, stripped) for p in IGNORE_PATTERNS):
        return None
    for rule in SITE_RULES[site]:
        if re.search(rule.pattern, stripped):
            return rule.kind
    return "unknown"


def _s(value: str) -> str:
    """A TOML basic string (JSON escaping is a subset of TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def _lit(value: str) -> str:
    """A TOML literal string for regexes (no escape processing), basic if impossible."""
    return f"'{value}'" if "'" not in value and "\n" not in value else _s(value)


def _inline(table: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{_s(k)} = {_s(v)}" for k, v in table.items()) + " }"


def render_site_toml(
    *,
    name: str,
    description: str,
    mains_hz: float,
    layout: dict[str, object],
    labels: list[dict[str, object]],
    outcome: dict[str, str],
    types: dict[str, str],
    subject_ids: str = "source",
    hash_salt: str | None = None,
    store_sfreq: float = 1000.0,
) -> str:
    """Render a site configuration in the ETL's TOML schema.

    Parameters
    ----------
    name, description : str
        Site key and free text.
    mains_hz : float
        Mains frequency.
    layout : dict
        ``[layout]`` keys (``kind``, ``root`` ... in order).
    labels : list of dict
        One ``[[labels]]`` table each.
    outcome : dict
        ``[outcome]`` keys.
    types : dict
        Channel type overrides (canonical name -> type).
    subject_ids : str
        ``source`` or ``hash``.
    hash_salt : str, optional
        Salt for ``hash``.
    store_sfreq : float
        Sampling rate of the store.

    Returns
    -------
    str
        TOML text.
    """
    out = [
        f"# Generated by sozstore.phantom for the synthetic site {name!r}.",
        f"name = {_s(name)}",
        f"description = {_s(description)}",
        f"mains_hz = {float(mains_hz)!r}",
        f"store_sfreq = {float(store_sfreq)!r}",
        f"subject_ids = {_s(subject_ids)}",
    ]
    if hash_salt is not None:
        out.append(f"hash_salt = {_s(hash_salt)}")
    out += ["", "[layout]"]
    for key, value in layout.items():
        out.append(f"{key} = {_value(value)}")
    out += ["", "[channels]", "case_sensitive = false", f"types = {_inline(types)}"]
    for table in labels:
        out += ["", "[[labels]]"]
        out += [f"{k} = {_value(v)}" for k, v in table.items()]
    out += ["", "[outcome]"]
    out += [f"{k} = {_s(v)}" for k, v in outcome.items()]
    out += ["", "[events]", "ignore = [" + ", ".join(_lit(p) for p in IGNORE_PATTERNS) + "]"]
    for rule in SITE_RULES[name]:
        out += [
            "",
            "[[events.rules]]",
            f"name = {_s(rule.name)}",
            f"kind = {_s(rule.kind)}",
            f"pattern = {_lit(rule.pattern)}",
        ]
    return "\n".join(out) + "\n"


def _value(value: object) -> str:
    if isinstance(value, str):
        return _s(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


#: Columns of the manifest written by :func:`write_manifest_site`.
MANIFEST_COLUMNS = ("file", "patient", "recording", "soz", "bad", "patient_name")


def write_manifest_site(root: Path, rows: Sequence[dict[str, str]], *, name: str = "unit",
                        salt: str = "unit-test", extra: str = "") -> Path:
    """A one-table site over EDF files in ``root``: ``root/manifest.csv`` and
    ``root/site.toml`` (returned), for tests and benchmarks that ingest files they wrote.

    ``rows`` map :data:`MANIFEST_COLUMNS` to values (missing ones are empty); ``soz`` and
    ``bad`` take the manifest's contact notation (``"A1-3"``). Onset and offset markers are
    the French and English texts. ``extra`` is appended to the TOML verbatim.
    """
    root.mkdir(parents=True, exist_ok=True)
    lines = [",".join(MANIFEST_COLUMNS)]
    lines += [",".join(f'"{r.get(c, "")}"' for c in MANIFEST_COLUMNS) for r in rows]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    toml = root / "site.toml"
    toml.write_text(textwrap.dedent(f"""
        name = "{name}"
        mains_hz = 50.0
        subject_ids = "hash"
        hash_salt = "{salt}"
        [layout]
        kind = "manifest"
        root = "."
        manifest = "manifest.csv"
        file_column = "file"
        subject_column = "patient"
        recording_column = "recording"
        bad_column = "bad"
        [[labels]]
        kind = "manifest"
        soz_column = "soz"
        [[events.rules]]
        name = "onset"
        kind = "onset"
        pattern = '(?i)^(début crise|onset)$'
        [[events.rules]]
        name = "offset"
        kind = "offset"
        pattern = '(?i)^(fin crise|offset)$'
    """) + extra)
    return toml
