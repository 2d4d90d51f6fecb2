"""Site configuration: one TOML file describes a site, so adding a site needs no code.

A site config says where the raw recordings are (a BIDS tree with entity filters, or a
folder of files listed in a manifest), where the clinicians' SOZ and resection labels live,
how seizure markers are written, how channel names are normalised, the mains frequency and
the store's sampling rate. :func:`load_site_config` validates it and raises
:class:`SiteConfigError` naming the file and the offending key.

Example
-------
.. code-block:: toml

    name = "hup"
    mains_hz = 60.0
    [layout]
    kind = "bids"
    root = "../raw/hup"
    extensions = [".edf"]
    [[labels]]
    kind = "status_description"
    soz_tokens = ["soz"]
    resected_tokens = ["resect"]
    [[events.rules]]
    name = "sz-onset"
    kind = "onset"
    pattern = '(?i)^sz onset$'
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

#: Base sampling rate of the store when a site does not say (Hz): every recording is stored
#: at a whole multiple of it (see :meth:`SiteConfig.store_rate`), so models that decimate
#: to 200 or 250 Hz by an integer factor stay exact.
DEFAULT_STORE_SFREQ = 1000.0
#: Highest store rate when a site does not say (Hz). A source recorded at >= 2 kHz keeps
#: 2 kHz, which holds the fast-ripple band (250-500 Hz) with the HFO filters' roll-off
#: (bands are clipped at 0.45 x the rate: 450 Hz at 1 kHz, 900 Hz at 2 kHz); 1 kHz cuts
#: it. Measurements and the reason for the rule: docs/etl.md, "The store's rate".
DEFAULT_STORE_SFREQ_MAX = 2000.0

CHANNEL_TYPES = ("seeg", "ecog", "eeg", "ecg", "eog", "emg", "stim", "misc")
EVENT_KINDS = ("onset", "offset", "clinical_onset", "note")
LABEL_KINDS = ("status_description", "column", "external", "manifest", "events")

#: NK/Persyst boilerplate seen in every Nihon Kohden export (gotcha 16).
DEFAULT_EVENT_IGNORE = (
    r"^\+\d+(\.\d+)?$",
    r"^Segment: REC START",
    r"^A1\+A2 OFF$",
)


class SiteConfigError(ValueError):
    """A site config is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class LayoutConfig:
    """Where a site's recordings are and how they are organised."""

    kind: Literal["bids", "manifest"]
    root: Path
    extensions: tuple[str, ...] = (".edf", ".vhdr", ".fif", ".bdf")
    subjects: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    acquisitions: tuple[str, ...] = ()
    participants: str | None = "participants.tsv"
    manifest: str | None = None
    file_column: str = "file"
    subject_column: str = "subject"
    recording_column: str | None = None
    task_column: str | None = None
    bad_column: str | None = None
    manifest_delimiter: str = ","


@dataclass(frozen=True)
class ChannelConfig:
    """Channel-name normalisation rules and per-site type overrides."""

    strip_prefixes: tuple[str, ...] = ("EEG ", "POL ", "SEEG ", "ECOG ")
    strip_suffixes: tuple[str, ...] = ("-Ref", "-REF", "-ref", "-AV", "+")
    case_sensitive: bool = False
    rename: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    type_patterns: tuple[tuple[str, str], ...] = ()
    default_type: str = "seeg"


@dataclass(frozen=True)
class LabelSource:
    """One place where SOZ / resection labels live.

    ``kind`` is one of

    ``status_description``
        Tokens in channels.tsv ``status_description`` (``soz``, ``resect,soz``).
    ``column``
        A column of channels.tsv or electrodes.tsv with truthy values (``yes``, ``1.0``).
    ``external``
        A per-subject table with contacts in range notation (``A'1-10; B2``).
    ``manifest``
        Columns of the site manifest in range notation.
    ``events``
        Per-seizure onset channels in an events.tsv column (RESPect).
    """

    kind: str
    target: Literal["soz", "resected"] = "soz"
    soz_tokens: tuple[str, ...] = ("soz",)
    resected_tokens: tuple[str, ...] = ("resect", "resected")
    table: Literal["channels", "electrodes"] = "channels"
    column: str | None = None
    true_values: tuple[str, ...] = ("yes", "true", "1", "1.0")
    false_values: tuple[str, ...] = ()
    path: Path | None = None
    subject_column: str = "subject"
    soz_column: str | None = None
    resected_column: str | None = None
    delimiter: str | None = None
    trial_type: str | None = None


@dataclass(frozen=True)
class EventRule:
    """A regex that turns a site's free-text marker into an event kind."""

    name: str
    kind: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class EventConfig:
    """Marker rules; the first rule whose pattern ``re.search``-es the text wins."""

    rules: tuple[EventRule, ...] = ()
    ignore: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in DEFAULT_EVENT_IGNORE)
    onset_channels_column: str | None = None


@dataclass(frozen=True)
class OutcomeConfig:
    """Where the surgical outcome of each subject is written."""

    table: Literal["participants", "manifest", "external", "none"] = "none"
    path: Path | None = None
    subject_column: str = "participant_id"
    outcome_column: str | None = None
    engel_column: str | None = None
    ilae_column: str | None = None


@dataclass(frozen=True)
class SiteConfig:
    """A validated site configuration (see the module docstring)."""

    name: str
    source: Path
    layout: LayoutConfig
    mains_hz: float = 60.0
    store_sfreq: float = DEFAULT_STORE_SFREQ
    store_sfreq_max: float = DEFAULT_STORE_SFREQ_MAX
    subject_ids: Literal["source", "hash"] = "source"
    hash_salt: str = ""
    description: str = ""
    channels: ChannelConfig = field(default_factory=ChannelConfig)
    labels: tuple[LabelSource, ...] = ()
    events: EventConfig = field(default_factory=EventConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    flat_threshold_uv: float = 0.5

    def store_rate(self, source_sfreq: float) -> float:
        """The store's sampling rate for a source recorded at ``source_sfreq`` Hz.

        The largest whole multiple ``k * store_sfreq`` (``k >= 1``) that is at most both
        the source rate and ``store_sfreq_max``: a 2048-Hz source is stored at 2 kHz and a
        1024-Hz, 999.41-Hz or 512-Hz one at 1 kHz with the defaults (nothing is stored
        below ``store_sfreq``; ``bandwidth_hz`` in the catalog says what a slow source
        holds). Rates within 0.1 % of a multiple count as that multiple (an EDF's
        1999.6 Hz is 2 kHz). ``store_sfreq_max = store_sfreq`` gives one rate for all.

        Parameters
        ----------
        source_sfreq : float
            Sampling rate of the source file (Hz).

        Returns
        -------
        float
            The store rate (Hz).
        """
        k_source = int(np.floor(source_sfreq * (1.0 + 1e-3) / self.store_sfreq))
        k_max = int(np.floor(self.store_sfreq_max * (1.0 + 1e-9) / self.store_sfreq))
        return float(self.store_sfreq * max(1, min(k_source, k_max)))

    def fingerprint_params(self) -> dict[str, Any]:
        """Parameters that change what the ETL writes for a recording (for provenance)."""
        return {
            "mains_hz": self.mains_hz,
            "store_sfreq": self.store_sfreq,
            "store_sfreq_max": self.store_sfreq_max,
            "flat_threshold_uv": self.flat_threshold_uv,
        }


_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class _Reader:
    """Pops keys from a TOML table, so unknown keys can be reported at the end."""

    def __init__(self, table: dict[str, Any], where: str, file: Path) -> None:
        self.table = dict(table)
        self.where = where
        self.file = file

    def fail(self, key: str, problem: str) -> SiteConfigError:
        loc = f"{self.where}.{key}" if self.where else key
        return SiteConfigError(f"{self.file}: `{loc}` {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *,
            required: bool = False) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.table.pop(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {names}, got {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, (list, str), None)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None, *,
               required: bool = False) -> str:
        value = self.get(key, str, default, required=required)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def regex(self, key: str, value: str) -> re.Pattern[str]:
        try:
            return re.compile(value)
        except re.error as err:
            raise self.fail(key, f"is not a valid regex ({err}): {value!r}") from None

    def done(self) -> None:
        if self.table:
            keys = ", ".join(sorted(self.table))
            raise SiteConfigError(f"{self.file}: unknown key(s) in "
                                  f"[{self.where or 'top level'}]: {keys}")


def _path(base: Path, value: str | None, root: Path | None = None) -> Path | None:
    """Resolve a path of the config: ``$root/...`` is inside the layout root, other relative
    paths are relative to the TOML file's folder."""
    if value is None:
        return None
    if value.startswith("$root/") or value == "$root":
        if root is None:
            raise ValueError(value)
        return (root / value[len("$root/"):]).resolve()
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def load_site_config(path: str | Path, *, root: str | Path | None = None) -> SiteConfig:
    """Read and validate a site TOML file.

    Parameters
    ----------
    path : str | Path
        The TOML file. Relative paths inside it are relative to its folder; paths written
        ``$root/...`` are inside the layout root.
    root : str | Path, optional
        Use this folder as ``layout.root`` instead of the file's (for the shipped configs of
        public datasets, which point at wherever the user keeps the dataset).

    Returns
    -------
    SiteConfig
        The validated configuration.

    Raises
    ------
    SiteConfigError
        If the file is missing, is not TOML, or a key is missing, unknown or ill-typed.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise SiteConfigError(f"{file}: site config not found")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise SiteConfigError(f"{file}: not valid TOML ({err})") from None
    return parse_site_config(data, file, root=Path(root).expanduser().resolve() if root else None)


def parse_site_config(data: dict[str, Any], file: Path, *, root: Path | None = None
                      ) -> SiteConfig:
    """Validate an already parsed TOML mapping (see :func:`load_site_config`)."""
    base = file.parent
    top = _Reader(data, "", file)
    name = top.get("name", str, required=True)
    if not _SITE_NAME.match(name):
        raise top.fail("name", f"must match {_SITE_NAME.pattern} (lower case); got {name!r}")
    description = top.get("description", str, "")
    mains_hz = top.get("mains_hz", float, 60.0)
    if mains_hz not in (50.0, 60.0):
        raise top.fail("mains_hz", f"must be 50 or 60; got {mains_hz}")
    store_sfreq = top.get("store_sfreq", float, DEFAULT_STORE_SFREQ)
    if not 64.0 <= store_sfreq <= 20000.0:
        raise top.fail("store_sfreq", f"must be within 64..20000 Hz; got {store_sfreq}")
    store_sfreq_max = top.get("store_sfreq_max", float, max(store_sfreq, DEFAULT_STORE_SFREQ_MAX))
    if not store_sfreq <= store_sfreq_max <= 20000.0:
        raise top.fail("store_sfreq_max", f"must be within store_sfreq..20000 Hz; got "
                                          f"{store_sfreq_max}")
    flat = top.get("flat_threshold_uv", float, 0.5)

    lay = _Reader(top.get("layout", dict, required=True), "layout", file)
    kind = lay.choice("kind", ("bids", "manifest"), required=True)
    root_value = lay.get("root", str, None if root is not None else ...)
    if root_value is ...:
        raise lay.fail("root", "is required")
    if root is None:
        root = _path(base, root_value)
    assert root is not None
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower()
                 for e in lay.strings("extensions", LayoutConfig.extensions))
    layout = LayoutConfig(
        kind=kind, root=root, extensions=exts,
        subjects=lay.strings("subjects"), sessions=lay.strings("sessions"),
        tasks=lay.strings("tasks"), acquisitions=lay.strings("acquisitions"),
        participants=lay.get("participants", str, "participants.tsv"),
        manifest=lay.get("manifest", str, None),
        file_column=lay.get("file_column", str, "file"),
        subject_column=lay.get("subject_column", str, "subject"),
        recording_column=lay.get("recording_column", str, None),
        task_column=lay.get("task_column", str, None),
        bad_column=lay.get("bad_column", str, None),
        manifest_delimiter=lay.get("manifest_delimiter", str, ","),
    )
    lay.done()
    if kind == "manifest" and not layout.manifest:
        raise SiteConfigError(f"{file}: `layout.manifest` is required when layout.kind = 'manifest'")

    subject_ids = top.choice("subject_ids", ("source", "hash"),
                             "hash" if kind == "manifest" else "source")
    hash_salt = top.get("hash_salt", str, "")

    ch = _Reader(top.get("channels", dict, {}), "channels", file)
    types = ch.get("types", dict, {})
    for raw, typ in types.items():
        if typ not in CHANNEL_TYPES:
            raise ch.fail(f"types.{raw}", f"must be one of {', '.join(CHANNEL_TYPES)}; got {typ!r}")
    patterns = []
    for i, item in enumerate(ch.get("type_patterns", list, [])):
        if not (isinstance(item, list) and len(item) == 2 and item[1] in CHANNEL_TYPES):
            raise ch.fail(f"type_patterns[{i}]", "must be [regex, type] with a known type")
        ch.regex(f"type_patterns[{i}]", item[0])
        patterns.append((item[0], item[1]))
    channels = ChannelConfig(
        strip_prefixes=ch.strings("strip_prefixes", ChannelConfig.strip_prefixes),
        strip_suffixes=ch.strings("strip_suffixes", ChannelConfig.strip_suffixes),
        case_sensitive=ch.get("case_sensitive", bool, False),
        rename=dict(ch.get("rename", dict, {})),
        types=dict(types),
        type_patterns=tuple(patterns),
        default_type=ch.choice("default_type", CHANNEL_TYPES, "seeg"),
    )
    ch.done()

    labels = []
    for i, raw in enumerate(top.get("labels", list, [])):
        if not isinstance(raw, dict):
            raise top.fail(f"labels[{i}]", "must be a table ([[labels]])")
        lab = _Reader(raw, f"labels[{i}]", file)
        lkind = lab.choice("kind", LABEL_KINDS, required=True)
        src = LabelSource(
            kind=lkind,
            target=lab.choice("target", ("soz", "resected"), "soz"),
            soz_tokens=tuple(t.lower() for t in lab.strings("soz_tokens", ("soz",))),
            resected_tokens=tuple(t.lower() for t in lab.strings("resected_tokens",
                                                                 ("resect", "resected"))),
            table=lab.choice("table", ("channels", "electrodes"), "channels"),
            column=lab.get("column", str, None),
            true_values=tuple(v.lower() for v in lab.strings("true_values",
                                                             LabelSource.true_values)),
            false_values=tuple(v.lower() for v in lab.strings("false_values", ())),
            path=_path(base, lab.get("path", str, None), root),
            subject_column=lab.get("subject_column", str, "subject"),
            soz_column=lab.get("soz_column", str, None),
            resected_column=lab.get("resected_column", str, None),
            delimiter=lab.get("delimiter", str, None),
            trial_type=lab.get("trial_type", str, None),
        )
        lab.done()
        if lkind in ("column", "events") and not src.column:
            raise lab.fail("column", f"is required for kind = {lkind!r}")
        if lkind == "external" and src.path is None:
            raise lab.fail("path", "is required for kind = 'external'")
        if lkind in ("external", "manifest") and not (src.soz_column or src.resected_column):
            raise lab.fail("soz_column", "or resected_column is required")
        if lkind == "manifest" and kind != "manifest":
            raise lab.fail("kind", "'manifest' labels need layout.kind = 'manifest'")
        labels.append(src)

    ev = _Reader(top.get("events", dict, {}), "events", file)
    rules = []
    for i, raw in enumerate(ev.get("rules", list, [])):
        if not isinstance(raw, dict):
            raise ev.fail(f"rules[{i}]", "must be a table ([[events.rules]])")
        r = _Reader(raw, f"events.rules[{i}]", file)
        rname = r.get("name", str, f"rule{i}")
        rkind = r.choice("kind", EVENT_KINDS, required=True)
        pattern = r.regex("pattern", r.get("pattern", str, required=True))
        r.done()
        rules.append(EventRule(name=rname, kind=rkind, pattern=pattern))
    ignore = tuple(ev.regex("ignore", p) for p in ev.strings("ignore", DEFAULT_EVENT_IGNORE))
    events = EventConfig(rules=tuple(rules), ignore=ignore,
                         onset_channels_column=ev.get("onset_channels_column", str, None))
    ev.done()

    oc = _Reader(top.get("outcome", dict, {}), "outcome", file)
    outcome = OutcomeConfig(
        table=oc.choice("table", ("participants", "manifest", "external", "none"), "none"),
        path=_path(base, oc.get("path", str, None), root),
        subject_column=oc.get("subject_column", str, "participant_id"),
        outcome_column=oc.get("outcome_column", str, None),
        engel_column=oc.get("engel_column", str, None),
        ilae_column=oc.get("ilae_column", str, None),
    )
    oc.done()
    if outcome.table == "external" and outcome.path is None:
        raise SiteConfigError(f"{file}: `outcome.path` is required when outcome.table = 'external'")
    top.done()

    return SiteConfig(
        name=name, source=file, layout=layout, mains_hz=mains_hz, store_sfreq=store_sfreq,
        store_sfreq_max=store_sfreq_max,
        subject_ids=subject_ids, hash_salt=hash_salt, description=description,
        channels=channels, labels=tuple(labels), events=events, outcome=outcome,
        flat_threshold_uv=flat,
    )
