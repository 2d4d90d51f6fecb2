"""Channel names and types: pure functions, no I/O.

The same SEEG contact is written many ways across sites and eras (``LA1``, ``LA01``,
``EEG LA 01-Ref``, ``POL LA1``, ``LA_1``, ``L’1``). :func:`canonical_name` turns each spelling
into one key; the raw name is kept beside it in the catalog. Types in channels.tsv are
unreliable (scalp and EKG channels typed SEEG, every EDF channel read as ``eeg`` by MNE), so
:func:`infer_types` decides from the name, the tsv and per-site overrides, in that order of trust
(documented at the function).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sozstore.etl.config import ChannelConfig, PatternTimeout, SitePattern

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "′": "'"})
# Type prefixes written by Nihon Kohden / EDF exports ("EEG Fp1", "ECG ECG1", "DIG DTRIG").
_PREFIX_TYPES = {
    "EEG": None, "POL": None, "SEEG": "seeg", "ECOG": "ecog", "ECG": "ecg", "EKG": "ecg",
    "EMG": "emg", "EOG": "eog", "DIG": "stim", "TRIG": "stim", "RESP": "misc",
    "SAO2": "misc", "SPO2": "misc", "PHOTIC": "misc", "DC": "misc", "REF_EEG": "misc",
}
_CONTACT = re.compile(r"^(?P<stem>.*?\D)(?P<num>\d+)$")
_ELECTRODE_CONTACT = re.compile(r"^(.*\d)-(\d+)$")
_BIPOLAR = re.compile(r"^(?P<a>[A-Za-z'][A-Za-z']*\d+)-(?P<b>[A-Za-z'][A-Za-z']*\d+)$")

#: 10-20 / 10-10 scalp positions that turn up inside iEEG files, often typed SEEG or ECoG
#: by channels.tsv (types there are unreliable, so names decide).
SCALP_NAMES = frozenset(
    "FP1 FP2 FPZ F7 F3 FZ F4 F8 T3 T4 T5 T6 T7 T8 C3 CZ C4 P7 P3 PZ P4 P8 O1 O2 OZ A1 A2 "
    "M1 M2 F9 F10 T9 T10 P9 P10 FT9 FT10 AF3 AF4 FC1 FC2 FC5 FC6 CP1 CP2 CP5 CP6 PO3 PO4 "
    "TP9 TP10 FPZ".split()
)
_NAME_TYPES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), t)
    for p, t in (
        (r"^(EKG|ECG)", "ecg"),
        (r"^(EOG|ORB)", "eog"),
        (r"^(EMG|CHIN)", "emg"),
        (r"^(STATUS|TRIG|DTRIG|MKR|STI\d*$|DIG)", "stim"),
        (r"^(EVENT|DC\d|\$|REF\d*$|E$|PHOTIC|PULSE|SPO2|SAO2|OSAT|RESP|PR$|X\d+$|PATIENT)", "misc"),
    )
)
_TSV_TYPES = {
    "SEEG": "seeg", "ECOG": "ecog", "EEG": "eeg", "ECG": "ecg", "EKG": "ecg", "EOG": "eog",
    "EMG": "emg", "TRIG": "stim", "STIM": "stim", "MISC": "misc", "OTHER": "misc",
    "DBS": "seeg", "REF": "misc", "RESP": "misc", "PUPIL": "misc", "AUDIO": "misc",
    "SYSCLOCK": "misc", "ADC": "misc", "DAC": "misc", "HEOG": "eog", "VEOG": "eog",
}
_NEURAL = ("seeg", "ecog", "eeg")


@dataclass(frozen=True)
class ChannelKey:
    """The canonical identity of one channel."""

    raw: str
    channel: str
    electrode: str | None
    contact: int | None
    type_hint: str | None
    #: a bipolar pair's second contact (``LAH2`` of ``LAH1-LAH2``); electrode and contact
    #: are then the first's. None for a single contact.
    cathode: str | None = None

    @property
    def bipolar(self) -> bool:
        """Whether the channel is a pair of contacts (anode minus cathode)."""
        return self.cathode is not None


def normalise_spelling(name: str, config: ChannelConfig | None = None) -> tuple[str, str | None]:
    """Strip prefixes, suffixes, spaces and padding; keep case.

    Returns the normalised name and a type hint taken from a typed prefix (``ECG ECG1``).
    """
    cfg = config or ChannelConfig()
    text = cfg.rename.get(name.strip(), name.strip()).translate(_APOSTROPHES)
    hint: str | None = None
    changed = True
    while changed:  # "EEG POL LA1" style double prefixes exist in NK exports
        changed = False
        for prefix in cfg.strip_prefixes:
            if text.upper().startswith(prefix.upper()) and len(text) > len(prefix):
                text = text[len(prefix):].strip()
                changed = True
        first, _, rest = text.partition(" ")
        if rest and first.upper() in _PREFIX_TYPES:
            hint = _PREFIX_TYPES[first.upper()] or hint
            text = rest.strip()
            changed = True
    for suffix in cfg.strip_suffixes:
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    text = text.replace(" ", "").replace("_", "")
    match = _BIPOLAR.match(text)
    if match:  # labels on bipolar pairs (LAH1-LAH2) keep both contacts
        return f"{_unpad(match['a'])}-{_unpad(match['b'])}", hint
    return _unpad(text), hint


def _unpad(text: str) -> str:
    match = _CONTACT.match(text)
    if match and not match["stem"].endswith("-"):
        return f"{match['stem']}{int(match['num'])}"
    return text


def canonical_name(name: str, config: ChannelConfig | None = None) -> str:
    """The canonical key of one channel name.

    Examples
    --------
    >>> canonical_name("EEG LG 01-Ref")
    'LG1'
    >>> canonical_name("L’01")
    "L'1"
    """
    cfg = config or ChannelConfig()
    text, _ = normalise_spelling(name, cfg)
    return text if cfg.case_sensitive else text.upper()


def split_contact(channel: str) -> tuple[str | None, int | None]:
    """Electrode (shaft) stem and contact index of a canonical name.

    ``"L'12"`` -> ``("L'", 12)``.
    """
    pair = _ELECTRODE_CONTACT.match(channel)
    if pair:  # electrode-contact style, "LAF14-3" is contact 3 of shaft LAF14
        return pair[1], int(pair[2])
    if "-" in channel:  # a bipolar pair is described by its first contact
        channel = channel.split("-", 1)[0]
    match = _CONTACT.match(channel)
    if not match:
        return None, None
    return match["stem"], int(match["num"])


def split_bipolar(channel: str) -> tuple[str, str] | None:
    """The two contacts of a bipolar pair's canonical name, or None.

    Both sides must be a contact (a stem ending in a non-digit, then a number): ``LAH1-LAH2``
    is ``("LAH1", "LAH2")``; ``LAF14-3`` (contact 3 of shaft LAF14, see
    :func:`split_contact`) and MNE's duplicate names (``X-0``) are not pairs.

    Examples
    --------
    >>> split_bipolar("LAH1-LAH2")
    ('LAH1', 'LAH2')
    >>> split_bipolar("LAF14-3") is None
    True
    """
    match = _BIPOLAR.match(channel)
    if match is None:
        return None
    return match["a"], match["b"]


def canonical_keys(names: Sequence[str], config: ChannelConfig | None = None) -> list[ChannelKey]:
    """Canonical keys of all channels of one recording.

    Upper-casing is skipped for this recording if it would merge two different contacts
    (RESPect names mixed-case stems such as ``sT1``, ``vT1``). Duplicate keys stay duplicates
    here; the caller reports them. A name is a bipolar pair (``cathode`` set) when both of its
    sides are contacts (:func:`split_bipolar`) and the cathode's shaft is one the recording
    knows (the stem of some channel's first or only contact).
    """
    cfg = config or ChannelConfig()
    spelled = [normalise_spelling(n, cfg) for n in names]
    case_sensitive = cfg.case_sensitive
    if not case_sensitive:
        exact = Counter(s for s, _ in spelled)
        upper = Counter(s.upper() for s, _ in spelled)
        if any(upper[k] > sum(v for s, v in exact.items() if s.upper() == k) for k in upper) or \
                len(upper) < len(exact):
            case_sensitive = True
    keys = []
    for raw, (text, hint) in zip(names, spelled):
        channel = text if case_sensitive else text.upper()
        electrode, contact = split_contact(channel)
        keys.append(ChannelKey(raw=raw, channel=channel, electrode=electrode, contact=contact,
                               type_hint=hint))
    shafts = {k.electrode for k in keys if k.electrode is not None}
    out = []
    for key in keys:
        pair = split_bipolar(key.channel)
        if pair is not None and split_contact(pair[1])[0] in shafts:
            key = replace(key, cathode=pair[1])
        out.append(key)
    return out


@dataclass(frozen=True)
class TypeDecision:
    """The type of one channel and where it came from."""

    #: the channel's type
    type: str
    #: what decided it: ``rule:types`` or ``rule:type_patterns[i]`` (the site's rules),
    #: ``tsv``, ``prefix`` (a typed prefix, ``ECG ECG1``), ``name`` (the built-in name
    #: rules), ``file`` (the reader's type) or ``default`` (the site's default type)
    source: str
    #: the type channels.tsv or the file stated, when the tsv or file states one
    stated: str | None = None
    #: the rule that decided, for a ``rule:`` or ``name`` source (``DC\\d -> misc``)
    rule: str | None = None

    @property
    def overrides(self) -> bool:
        """Whether a rule (the site's or a name rule) replaced a type the tsv or file
        stated."""
        return (self.rule is not None and self.stated is not None
                and self.stated != self.type)


def infer_types(keys: Sequence[ChannelKey], *, tsv_types: Sequence[str | None] | None = None,
                file_types: Sequence[str | None] | None = None,
                config: ChannelConfig | None = None) -> list[str]:
    """Channel types of one recording (the types of :func:`decide_types`)."""
    return [d.type for d in decide_types(keys, tsv_types=tsv_types, file_types=file_types,
                                         config=config)]


def decide_types(keys: Sequence[ChannelKey], *, tsv_types: Sequence[str | None] | None = None,
                 file_types: Sequence[str | None] | None = None,
                 config: ChannelConfig | None = None) -> list[TypeDecision]:
    """Channel types of one recording, each with where it came from.

    Order of trust, first decisive source wins:

    1. the site's override table (raw or canonical name);
    2. the site's extra name patterns;
    3. a specific non-neural type in channels.tsv (ECG, EOG, EMG, TRIG) or from a typed
       prefix (``ECG ECG1``);
    4. the name: EKG/ECG, EOG, EMG, trigger, DC/EVENT/$ inputs; a 10-20 scalp name is ``eeg``
       unless its stem is also a depth shaft in this recording, i.e. has at least three
       contacts outside the 10-20 numbers (``F1..F12`` makes ``F3`` SEEG);
    5. the type in channels.tsv (SEEG, ECOG, EEG, MISC: an ``EKG1`` typed MISC is ECG by
       step 4) or from the reader (FIF knows);
    6. the site's default type.

    A decision by steps 1, 2 or 4 that differs from the type channels.tsv (any type it
    names) or the file (SEEG or ECoG; MNE types every EDF channel EEG, which states
    nothing) stated is an override (:attr:`TypeDecision.overrides`), which the ETL reports.
    """
    cfg = config or ChannelConfig()
    n = len(keys)
    tsv = list(tsv_types) if tsv_types is not None else [None] * n
    filed = list(file_types) if file_types is not None else [None] * n
    site_patterns = [(SitePattern(p, re.IGNORECASE), t) for p, t in cfg.type_patterns]
    contacts_per_stem: dict[str, set[int]] = {}
    for key in keys:
        if key.electrode is not None and key.contact is not None:
            contacts_per_stem.setdefault(key.electrode.upper(), set()).add(key.contact)

    out = []
    for key, tsv_type, file_type in zip(keys, tsv, filed):
        tsv_norm = _TSV_TYPES.get((tsv_type or "").strip().upper())
        file_norm = file_type if file_type in ("seeg", "ecog") else None
        stated = tsv_norm or file_norm
        decision: TypeDecision | None = None
        listed = next((name for name in (key.raw, key.channel) if cfg.types.get(name)), None)
        if listed is not None:
            decision = TypeDecision(cfg.types[listed], "rule:types", stated,
                                    f"types[{listed!r}] -> {cfg.types[listed]}")
        if decision is None:
            hit = _site_pattern_hit(site_patterns, key.channel)
            if hit is not None:
                i, typ = hit
                decision = TypeDecision(typ, f"rule:type_patterns[{i}]", stated,
                                        f"type_patterns[{i}] '{cfg.type_patterns[i][0]}' -> "
                                        f"{typ}")
        if decision is None and tsv_norm and tsv_norm not in _NEURAL + ("misc",):
            decision = TypeDecision(tsv_norm, "tsv", stated)
        if decision is None and key.type_hint and key.type_hint not in _NEURAL:
            decision = TypeDecision(key.type_hint, "prefix", stated)
        if decision is None:
            named = _name_rule(key, contacts_per_stem)
            if named is not None:
                decision = TypeDecision(named[0], "name", stated, named[1])
        if decision is None and tsv_norm:
            decision = TypeDecision(tsv_norm, "tsv", stated)
        if decision is None and key.type_hint:
            decision = TypeDecision(key.type_hint, "prefix", stated)
        if decision is None and file_norm:
            decision = TypeDecision(file_norm, "file", stated)
        if decision is None:
            decision = TypeDecision(cfg.default_type, "default", stated)
        out.append(decision)
    return out


def type_override_counts(decisions: Iterable[TypeDecision]) -> dict[str, Counter[str]]:
    """How many channels each rule moved off a stated type, per stated type.

    Returns
    -------
    dict of str to Counter
        Rule label -> {stated type: channels} for the decisions that override
        (:attr:`TypeDecision.overrides`), rules in first-seen order.
    """
    counts: dict[str, Counter[str]] = {}
    for decision in decisions:
        if decision.overrides:
            assert decision.rule is not None and decision.stated is not None
            counts.setdefault(decision.rule, Counter())[decision.stated] += 1
    return counts


class TypePatternTimeoutError(ValueError):
    """A site's ``channels.type_patterns`` regex hangs on a channel name; one line naming
    the pattern's place in the config, the pattern and the name."""


def _site_pattern_hit(patterns: Sequence[tuple[SitePattern, str]], channel: str
                      ) -> tuple[int, str] | None:
    """The place in the config and the type of the first site pattern that matches
    ``channel``."""
    for i, (pattern, typ) in enumerate(patterns):
        try:
            if pattern.search(channel) is not None:
                return i, typ
        except PatternTimeout as err:
            raise TypePatternTimeoutError(
                f"site rule channels.type_patterns[{i}] hangs: {err}; rewrite it without "
                "nested repetition") from None
    return None


def mne_unique_names(names: Sequence[str]) -> list[str]:
    """``names`` made unique the way MNE's readers rename repeated channel labels.

    MNE numbers the copies of a repeated label ``X-0``, ``X-1``, ... (trying ``X-a``,
    ``X-b``, ... if that name is taken; ``mne/_fiff/meas_info.py``,
    ``_unique_channel_names``), so a channels.tsv that lists the file's own duplicates
    (``X``, ``X``) names the channels the reader calls ``X-0``, ``X-1``.

    Parameters
    ----------
    names : sequence of str
        Channel names in file order, as a channels.tsv lists them.

    Returns
    -------
    list of str
        The names MNE gives the same channels.
    """
    counts = Counter(names)
    taken = set(names)
    out = list(names)
    for stem in (n for n in dict.fromkeys(names) if counts[n] > 1):
        places = [i for i, n in enumerate(names) if n == stem]
        for idx, i in enumerate(places):
            for suffix in (str(idx), *"abcdefghijklmnopqrstuvwxyz"):
                candidate = f"{stem}-{suffix}"
                if candidate not in taken:
                    break
            out[i] = candidate
            taken.add(candidate)
    return out


def tsv_disagreement(file_names: Sequence[str], tsv_names: Sequence[str]) -> str | None:
    """How a channels.tsv's names disagree with its file's channels, or ``None``.

    Duplicates the tsv lists as the file has them (``X``, ``X`` for MNE's ``X-0``,
    ``X-1``) agree: they are then ingested as the documented ``X~0``, ``X~1``.

    Parameters
    ----------
    file_names : sequence of str
        The channel names the reader gives (MNE's, duplicates renamed).
    tsv_names : sequence of str
        The ``name`` column of channels.tsv, in order.

    Returns
    -------
    str or None
        One phrase: the row and channel counts and a few names on each side only.
    """
    renamed = mne_unique_names(tsv_names)
    file_set, tsv_set = set(file_names), set(renamed)
    if file_set == tsv_set and len(renamed) == len(file_names):
        return None
    only_file = sorted(file_set - tsv_set)
    only_tsv = sorted({name for name, new in zip(tsv_names, renamed) if new not in file_set})
    detail = []
    if only_file:
        detail.append(f"in file only: {', '.join(only_file[:5])}"
                      + (" ..." if len(only_file) > 5 else ""))
    if only_tsv:
        detail.append(f"in tsv only: {', '.join(only_tsv[:5])}"
                      + (" ..." if len(only_tsv) > 5 else ""))
    return (f"channels.tsv disagrees with the file ({len(tsv_names)} rows vs "
            f"{len(file_names)} channels; {'; '.join(detail)})")


def _name_rule(key: ChannelKey, contacts_per_stem: dict[str, set[int]]
               ) -> tuple[str, str] | None:
    """The type the built-in name rules give ``key`` and the rule's label, or None."""
    for pattern, typ in _NAME_TYPES:
        if pattern.search(key.channel):
            return typ, f"name '{pattern.pattern}' -> {typ}"
    upper = key.channel.upper()
    if upper in SCALP_NAMES:
        stem = (key.electrode or "").upper()
        numbers = contacts_per_stem.get(stem, set())
        scalp_numbers = {int(n[len(stem):]) for n in SCALP_NAMES
                         if n.startswith(stem) and n[len(stem):].isdigit()}
        # A depth shaft has many contacts; two stray inputs (NK "POL T1", "POL T2") do not
        # make T7 a shaft.
        if not stem or len(numbers - scalp_numbers) < 3:
            return "eeg", "name 10-20 scalp position -> eeg"
    return None


_RANGE_SPLIT = re.compile(r"[;:\n]+")
_ITEM = re.compile(
    r"^(?P<stem>[^\d\s,-][^\d,]*?)?\s*(?P<a>\d+)?\s*(?:-\s*(?P<stem2>[^\d\s,-][^\d,]*?)?\s*(?P<b>\d+))?$"
)


class ContactListError(ValueError):
    """A contact list in range notation could not be parsed."""


def expand_contacts(text: str | None) -> list[str]:
    """Expand clinical range notation into contact names (not yet canonical).

    Understands ``A'1-10``, ``A'1-A'10``, ``A'1,2,5,7``, ``LA1-LA4; RH2``, items separated by
    ``;``, ``:``, ``,`` or new lines, curly apostrophes, and a bare stem (``A'``) meaning the
    whole electrode (returned as ``"A'*"``).

    Examples
    --------
    >>> expand_contacts("A'1-3; B2,4")
    ["A'1", "A'2", "A'3", 'B2', 'B4']
    """
    if text is None:
        return []
    text = str(text).translate(_APOSTROPHES).strip()
    if not text or text.lower() in ("n/a", "nan", "none", "-"):
        return []
    out: list[str] = []
    for group in _RANGE_SPLIT.split(text):
        stem: str | None = None
        for part in group.split(","):
            part = part.strip()
            if not part:
                continue
            match = _ITEM.match(part)
            if not match or not (match["stem"] or match["a"]):
                raise ContactListError(f"cannot read contact item {part!r} in {text!r}")
            if match["stem"]:
                stem = match["stem"].strip().replace(" ", "")
            if stem is None:
                raise ContactListError(f"contact number without electrode: {part!r} in {text!r}")
            if match["a"] is None:
                out.append(f"{stem}*")
                continue
            a = int(match["a"])
            b = int(match["b"]) if match["b"] is not None else a
            if match["stem2"] and match["stem2"].strip() != stem:
                raise ContactListError(f"range across electrodes: {part!r} in {text!r}")
            if b < a or b - a > 256:
                raise ContactListError(f"bad range {part!r} in {text!r}")
            out.extend(f"{stem}{i}" for i in range(a, b + 1))
    return out


def match_contacts(listed: Iterable[str], keys: Sequence[ChannelKey],
                   config: ChannelConfig | None = None) -> tuple[set[str], list[str]]:
    """Canonical channels of a recording named by a contact list.

    Returns the matched canonical names and the listed names that matched nothing.
    """
    cfg = config or ChannelConfig()
    present = {k.channel for k in keys}
    upper_index = {k.channel.upper(): k.channel for k in keys}
    by_stem: dict[str, list[str]] = {}
    for k in keys:
        if k.electrode:
            by_stem.setdefault(k.electrode.upper(), []).append(k.channel)
    matched: set[str] = set()
    missing: list[str] = []
    for item in listed:
        if item.endswith("*"):
            stem = canonical_name(item[:-1] + "1", cfg)[:-1].upper()
            hits = by_stem.get(stem, [])
            matched.update(hits)
            if not hits:
                missing.append(item)
            continue
        name = canonical_name(item, cfg)
        hit = name if name in present else upper_index.get(name.upper())
        if hit is None:
            missing.append(item)
        else:
            matched.add(hit)
    return matched, missing
