"""Seizure markers: free text in, (kind, rule) out, by the site's regex table (marker texts
are site-specific, misspelled and truncated, e.g. ``eeg sz start``, ``clincial osnet``)."""

from __future__ import annotations

from dataclasses import dataclass

from sozstore.etl.config import EventConfig


@dataclass(frozen=True)
class ClassifiedEvent:
    """One marker after classification; ``kind`` is ``ignore`` for boilerplate."""

    onset_s: float
    duration_s: float
    raw_text: str
    kind: str
    rule: str | None


def classify_text(text: str, config: EventConfig) -> tuple[str, str | None]:
    """Kind and rule name of one marker text; ``('ignore', None)`` for boilerplate,
    ``('unknown', None)`` when no rule matches."""
    stripped = text.strip()
    for pattern in config.ignore:
        if pattern.search(stripped):
            return "ignore", None
    for rule in config.rules:
        if rule.pattern.search(stripped):
            return rule.kind, rule.name
    return "unknown", None


def classify_events(rows: list[tuple[float, float, str]], config: EventConfig
                    ) -> list[ClassifiedEvent]:
    """Classify ``(onset_s, duration_s, text)`` rows, dropping boilerplate and exact
    duplicates (same onset and text: NK exports repeat annotations, and a file's markers can
    repeat what events.tsv already lists)."""
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
