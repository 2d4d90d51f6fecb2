"""Seizure markers: free text in, (kind, rule) out, by the site's regex table (marker texts
are site-specific, misspelled and truncated, e.g. ``eeg sz start``, ``clincial osnet``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sozstore.etl.config import EventConfig, PatternTimeout, SitePattern, shorten


@dataclass(frozen=True)
class ClassifiedEvent:
    """One marker after classification; ``kind`` is ``ignore`` for boilerplate."""

    onset_s: float
    duration_s: float
    raw_text: str
    kind: str
    rule: str | None


class RuleTimeoutError(ValueError):
    """A site's event rule ran past its time bound on one marker text; the message is one
    line naming the rule (its config key and name), the pattern and the text."""


def _search(pattern: SitePattern, text: str, where: str) -> bool:
    try:
        return pattern.search(text) is not None
    except PatternTimeout as err:
        raise RuleTimeoutError(f"site rule {where} hangs: {err}; rewrite it without nested "
                               "repetition") from None


def classify_text(text: str, config: EventConfig) -> tuple[str, str | None]:
    """Kind and rule name of one marker text.

    Returns
    -------
    tuple of (str, str or None)
        ``('ignore', None)`` for boilerplate, ``('unknown', None)`` when no rule matches.

    Raises
    ------
    RuleTimeoutError
        If a rule's search runs past ``PATTERN_TIMEOUT_S`` (catastrophic backtracking).
    """
    stripped = text.strip()
    for i, pattern in enumerate(config.ignore):
        if _search(pattern, stripped, f"events.ignore[{i}]"):
            return "ignore", None
    for i, rule in enumerate(config.rules):
        if _search(rule.pattern, stripped, f"events.rules[{i}] {rule.name!r}"):
            return rule.kind, rule.name
    return "unknown", None


def classify_events(rows: list[tuple[float, float, str]], config: EventConfig
                    ) -> list[ClassifiedEvent]:
    """Classify ``(onset_s, duration_s, text)`` rows, dropping boilerplate and exact
    duplicates (same onset and text: NK exports repeat annotations, and a file's markers can
    repeat what events.tsv already lists).

    Raises
    ------
    RuleTimeoutError
        If a rule hangs on a text: the recording fails alone, with one line naming them.
    """
    seen: set[tuple[float, str]] = set()
    out = []
    for onset, duration, text in rows:
        kind, rule = classify_text(text, config)
        key = (round(onset, 6), text.strip())
        if kind == "ignore" or key in seen:
            continue
        seen.add(key)
        out.append(ClassifiedEvent(onset_s=float(onset), duration_s=float(duration or 0.0),
                                   raw_text=text.strip(), kind=kind, rule=rule))
    return out


def _number(value: str | None) -> float | None:
    """``value`` as a finite float, or ``None`` if it is missing or not a number."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def events_tsv_rows(rows: Sequence[dict[str, str | None]]
                    ) -> tuple[list[tuple[float, float, str]], list[str]]:
    """Markers of an events.tsv as ``(onset_s, duration_s, text)``, and what was dropped.

    The text is ``trial_type``, else ``value``. A row with a text but an onset that is
    missing or not a finite number is dropped with a warning (never silently: it may be the
    seizure onset); a duration that is not a number counts as 0 s, also with a warning.

    Parameters
    ----------
    rows : sequence of dict
        The rows, as :func:`~sozstore.etl.tables.read_rows` gives them (header at line 1).

    Returns
    -------
    markers : list of tuple
        ``(onset_s, duration_s, text)`` of the usable rows.
    warnings : list of str
        At most one line per problem kind, naming the tsv lines and the texts.
    """
    out: list[tuple[float, float, str]] = []
    bad_onsets: list[str] = []
    bad_durations: list[str] = []
    for line, row in enumerate(rows, start=2):
        text = row.get("trial_type") or row.get("value") or ""
        if not text:
            continue
        onset = _number(row.get("onset"))
        if onset is None:
            bad_onsets.append(f"line {line} {shorten(text, 30)!r} (onset "
                              f"{row.get('onset') or 'missing'!r})")
            continue
        duration = _number(row.get("duration"))
        if duration is None and row.get("duration") is not None:
            bad_durations.append(f"line {line} ({row.get('duration')!r})")
        out.append((onset, duration or 0.0, text))
    warnings = []
    if bad_onsets:
        warnings.append(f"{len(bad_onsets)} event(s) in events.tsv dropped, onset not a "
                        f"number: {'; '.join(bad_onsets[:3])}"
                        + (" ..." if len(bad_onsets) > 3 else ""))
    if bad_durations:
        warnings.append(f"{len(bad_durations)} event duration(s) in events.tsv not a number, "
                        f"taken as 0 s: {'; '.join(bad_durations[:3])}"
                        + (" ..." if len(bad_durations) > 3 else ""))
    return out, warnings
