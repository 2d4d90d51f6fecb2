"""Channel-name conventions: canonical keys, channel types and compressed contact lists.

These helpers define the *truth* side of naming: the canonical key written to
``truth/channels.parquet`` for every raw channel name, the truth channel type, and the
compressed range notation used by clinical spreadsheets (``A'1-10; B'1,2,5``). The
generator never needs to parse what it wrote, but :func:`expand_contacts` is provided so
the tests can prove that every written contact list expands back to the planned contacts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "CHANNEL_TYPES",
    "SCALP_10_20",
    "canonical_channel",
    "compress_contacts",
    "expand_contacts",
    "split_contact",
    "truth_channel_type",
]

#: Channel types allowed in ``truth/channels.parquet``.
CHANNEL_TYPES: tuple[str, ...] = ("seeg", "ecog", "eeg", "ecg", "eog", "emg", "stim", "misc")

#: Scalp 10-20 (and 10-10 midline) names that show up inside iEEG files; their truth type
#: is ``eeg`` whatever the site's channels.tsv says (HUP types them SEEG/ECOG).
SCALP_10_20: frozenset[str] = frozenset(
    {
        "FP1",
        "FP2",
        "FPZ",
        "F3",
        "F4",
        "F7",
        "F8",
        "FZ",
        "C3",
        "C4",
        "CZ",
        "P3",
        "P4",
        "PZ",
        "T3",
        "T4",
        "T5",
        "T6",
        "T7",
        "T8",
        "P7",
        "P8",
        "O1",
        "O2",
        "OZ",
        "A1",
        "A2",
        "M1",
        "M2",
    }
)

_PREFIX = re.compile(r"^(EEG|POL|SEEG)\s+", re.IGNORECASE)
_SUFFIX = re.compile(r"(-REF|\+)$", re.IGNORECASE)
_CONTACT = re.compile(r"^(?P<stem>.*?[^\d])(?P<num>\d+)$")


def canonical_channel(raw: str) -> str:
    """Return the canonical channel key of a raw channel name.

    The rule (shared with the ETL's contract): strip an ``EEG ``/``POL ``/``SEEG `` prefix
    and a ``-Ref``/``-REF``/``+`` suffix, drop spaces and underscores, map the curly
    apostrophe ``’`` to ``'``, upper-case, and drop leading zeros of a trailing contact
    number.

    Parameters
    ----------
    raw : str
        The channel name as written in the file.

    Returns
    -------
    str
        The canonical key, e.g. ``EEG LG 01-Ref`` -> ``LG1``, ``LA01`` -> ``LA1``,
        ``L’1`` -> ``L'1``, ``ECG+`` -> ``ECG``.
    """
    name = raw.strip().replace("\u2019", "'")
    name = _PREFIX.sub("", name)
    name = _SUFFIX.sub("", name)
    name = name.replace(" ", "").replace("_", "").upper()
    match = _CONTACT.match(name)
    if match is not None:
        # int() drops leading zeros but keeps a lone contact "0" (HUP166 ``LB0``).
        name = f"{match['stem']}{int(match['num'])}"
    return name


def split_contact(canonical: str) -> tuple[str, int] | None:
    """Split a canonical contact key into its electrode stem and contact number.

    Parameters
    ----------
    canonical : str
        A key produced by :func:`canonical_channel`.

    Returns
    -------
    tuple of (str, int) or None
        ``("L'", 1)`` for ``L'1``; ``None`` when the key does not end in a number.
    """
    match = _CONTACT.match(canonical)
    if match is None:
        return None
    return match["stem"], int(match["num"])


def truth_channel_type(canonical: str, contact_type: str) -> str:
    """Return the truth channel type of a canonical name.

    Parameters
    ----------
    canonical : str
        Canonical channel key.
    contact_type : str
        Type to use for an intracranial contact (``"seeg"`` or ``"ecog"``).

    Returns
    -------
    str
        ``eeg`` for scalp 10-20 names, ``ecg`` for EKG/ECG, ``misc`` for EVENT/DC,
        otherwise ``contact_type``.
    """
    if canonical in SCALP_10_20:
        return "eeg"
    if canonical.startswith(("EKG", "ECG")):
        return "ecg"
    if canonical.startswith(("EVENT", "DC")):
        return "misc"
    return contact_type


def compress_contacts(
    contacts: Iterable[tuple[str, int]],
    *,
    style: str = "short",
    curly: bool = False,
) -> str:
    """Write contacts in the compressed range notation of clinical spreadsheets.

    Parameters
    ----------
    contacts : iterable of (str, int)
        ``(stem, contact number)`` pairs as written in the signal files (stems keep
        their case and primes).
    style : {"short", "long"}
        ``short`` writes ``A'1-10``; ``long`` repeats the stem at the end of a range
        (``LA1-LA4``), both as seen in the ds003029 clinical sheet.
    curly : bool
        Write primes as the typographic apostrophe ``’`` (spreadsheet autocorrect).

    Returns
    -------
    str
        Electrode groups separated by ``"; "``, e.g. ``"A'1-4,7; B'2,3"``. Runs of three
        or more consecutive contacts become ranges; shorter runs are listed.
    """
    if style not in ("short", "long"):
        raise ValueError(f"style must be 'short' or 'long', got {style!r}")
    by_stem: dict[str, set[int]] = {}
    for stem, number in contacts:
        by_stem.setdefault(stem, set()).add(int(number))
    groups: list[str] = []
    for stem in sorted(by_stem, key=_natural_key):
        numbers = sorted(by_stem[stem])
        items: list[str] = []
        start = prev = numbers[0]
        for following in [*numbers[1:], None]:  # None flushes the last run
            if following is not None and following == prev + 1:
                prev = following
                continue
            if prev - start >= 2:
                end = f"{stem}{prev}" if style == "long" else str(prev)
                items.append(f"{start}-{end}")
            else:
                items.extend(str(n) for n in range(start, prev + 1))
            if following is not None:
                start = prev = following
        groups.append(stem + ",".join(items))
    text = "; ".join(groups)
    return text.replace("'", "\u2019") if curly else text


_GROUP = re.compile(r"^(?P<stem>.*?[^\d,\-\s])(?P<items>\d.*)$")


def expand_contacts(text: str) -> list[tuple[str, int]]:
    """Expand the compressed range notation back into ``(stem, number)`` pairs.

    Parameters
    ----------
    text : str
        A cell such as ``"A'1-10; B’2,3; LA1-LA4"``; empty or ``n/a`` gives ``[]``.

    Returns
    -------
    list of (str, int)
        Contacts in order of appearance; curly apostrophes are normalised to ``'``.
    """
    text = text.strip().replace("\u2019", "'")
    if not text or text.lower() == "n/a":
        return []
    out: list[tuple[str, int]] = []
    for group in re.split(r";\s*", text):
        group = group.strip()
        if not group:
            continue
        match = _GROUP.match(group)
        if match is None:
            raise ValueError(f"cannot parse contact group {group!r}")
        stem = match["stem"]
        for item in match["items"].split(","):
            item = item.strip()
            if "-" in item:
                first, last = item.split("-", 1)
                last = last[len(stem) :] if last.startswith(stem) else last
                out.extend((stem, n) for n in range(int(first), int(last) + 1))
            else:
                out.append((stem, int(item)))
    return out


def _natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key that orders ``A2`` before ``A10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def natural_sorted(names: Sequence[str]) -> list[str]:
    """Return ``names`` in natural order (``LA2`` before ``LA10``).

    Parameters
    ----------
    names : sequence of str
        Names to sort.

    Returns
    -------
    list of str
        Sorted copy.
    """
    return sorted(names, key=_natural_key)
