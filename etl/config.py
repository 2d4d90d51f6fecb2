"""Site configuration: one TOML file describes a site, so adding a site needs no code.

A site config says where the raw recordings are (a BIDS tree with entity filters, or a
folder of files listed in a manifest), where the clinicians' SOZ and resection labels live,
how seizure markers are written, how channel names are normalised, the mains frequency and
the store's sampling rate. :func:`load_site_config` reads it in three steps (read the TOML,
validate it against :class:`SiteConfig`, resolve its paths) and raises
:class:`SiteConfigError`, one line naming the file and the offending key, on any problem.
:func:`site_config_json_schema` gives the JSON Schema of the file (published as
``docs/site-config.schema.json``; ``sozstore config schema`` prints it).

Every key, its type, default and description is written once, in the model classes below.
They are pydantic v2 models because pydantic generates the JSON Schema from the same
classes, rejects unknown keys (``extra="forbid"``), runs per-field and cross-field
validators whose errors carry the key path, and is the most widely used validation library
(already a dependency). msgspec validates as strictly and faster, but its JSON Schema has
no per-field descriptions and it has no cross-field validators, and a config is read once
per run, so speed does not matter.

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

import difflib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import numpy as np
import regex
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    Strict,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from sozstore.etl.outcome import is_outcome_value

#: Base sampling rate of the store when a site does not say (Hz): every recording is stored
#: at a whole multiple of it (see :meth:`SiteConfig.store_rate`), so models that decimate
#: to 200 or 250 Hz by an integer factor stay exact.
DEFAULT_STORE_SFREQ = 1000.0
#: Highest store rate when a site does not say (Hz). A source recorded at >= 2 kHz keeps
#: 2 kHz, which holds the fast-ripple band (250-500 Hz) with the HFO filters' roll-off
#: (bands are clipped at 0.45 x the rate: 450 Hz at 1 kHz, 900 Hz at 2 kHz); 1 kHz cuts
#: it. Measurements and the reason for the rule: docs/etl.md, "The store's rate".
DEFAULT_STORE_SFREQ_MAX = 2000.0
#: Highest rate a site may ask for (Hz).
MAX_STORE_SFREQ = 20000.0

ChannelType = Literal["seeg", "ecog", "eeg", "ecg", "eog", "emg", "stim", "misc"]
EventKind = Literal["onset", "offset", "clinical_onset", "note"]
LabelKind = Literal["status_description", "column", "external", "manifest", "events"]
SubjectIds = Literal["source", "hash"]
CHANNEL_TYPES: tuple[str, ...] = get_args(ChannelType)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
LABEL_KINDS: tuple[str, ...] = get_args(LabelKind)

#: NK/Persyst boilerplate seen in every Nihon Kohden export: clock stamps (``+75.000000``)
#: that duplicate every annotation, ``Segment: REC START ...`` and ``A1+A2 OFF``.
DEFAULT_EVENT_IGNORE = (
    r"^\+\d+(\.\d+)?$",
    r"^Segment: REC START",
    r"^A1\+A2 OFF$",
)

#: Written ``$root/...``, a path is inside the layout root rather than the TOML's folder.
ROOT_PREFIX = "$root"
#: Longest time one search of a site's regex may take (s). Marker texts and channel names
#: are short (ds003029's NK annotations are cut at 20 characters): a sane pattern answers
#: in microseconds, so only catastrophic backtracking (``(a|aa)+$``) reaches this.
PATTERN_TIMEOUT_S = 1.0


class SiteConfigError(ValueError):
    """A site config is invalid; the message names the file and the key."""


class _KeyProblem(ValueError):
    """A cross-field rule failed; ``loc`` is the key it blames, relative to the validated
    model (pydantic reports a model validator's error at the model itself)."""

    def __init__(self, loc: tuple[str | int, ...], problem: str) -> None:
        super().__init__(problem)
        self.loc = loc


# ------------------------------------------------------------------------- value types
def _one_or_many(value: object) -> object:
    """One string where a list is expected is a list of one (``tasks = "ictal"``)."""
    return (value,) if isinstance(value, str) else value


def _lower(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.lower() for v in values)


def _dotted_lower(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.lower() if v.startswith(".") else "." + v.lower() for v in values)


class PatternTimeout(ValueError):
    """A site regex ran past :data:`PATTERN_TIMEOUT_S` on one text (catastrophic
    backtracking); the message names the pattern and the text."""


class SitePattern:
    """A regex from a site config, searched with a time bound.

    The syntax is Python's :mod:`re` (the pattern is validated by it), but searches run on
    the ``regex`` module, whose ``timeout`` stops a catastrophic pattern (``(a|aa)+$`` on a
    long run of ``a``), which :mod:`re` cannot do: one bad rule must not hang a recording
    (issue 11). ``repr`` is that of the :mod:`re` pattern, because ``inputs_fingerprint``
    (etl/pipeline.py) hashes the repr of the events section.

    Parameters
    ----------
    pattern : str
        The regex.
    flags : int
        :mod:`re` flags (only ``re.IGNORECASE`` is used by callers).

    Raises
    ------
    re.error
        If ``pattern`` is not a valid Python regex.
    """

    __slots__ = ("_compiled", "_re", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._re = re.compile(pattern, flags)
        self._compiled = regex.compile(pattern, regex.IGNORECASE if flags & re.IGNORECASE
                                       else 0)
        self.pattern = pattern

    def search(self, text: str, *, timeout_s: float = PATTERN_TIMEOUT_S
               ) -> regex.Match[str] | None:
        """The first match in ``text``, or ``None``.

        Raises
        ------
        PatternTimeout
            If the search runs past ``timeout_s`` seconds.
        """
        try:
            return self._compiled.search(text, timeout=timeout_s)
        except TimeoutError:
            raise PatternTimeout(f"pattern {self.pattern!r} ran past {timeout_s:g} s on "
                                 f"{shorten(text)!r}") from None

    def __repr__(self) -> str:
        return repr(self._re)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SitePattern) and (self._re.pattern, self._re.flags) == (
            other._re.pattern, other._re.flags)

    def __hash__(self) -> int:
        return hash((self._re.pattern, self._re.flags))


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis) for one-line messages."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _compile(value: object) -> SitePattern:
    if isinstance(value, SitePattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a regex string, got {value!r}")
    try:
        return SitePattern(value)
    except re.error as err:
        raise ValueError(f"is not a valid regex ({err}): {value!r}") from None


def _check_regex(value: str) -> str:
    _compile(value)
    return value


_ONE_OR_MANY_SCHEMA = {"anyOf": [{"type": "string"},
                                 {"type": "array", "items": {"type": "string"}}]}
# Strict scalars: TOML has real types, so `mains_hz = "50"` or `case_sensitive = 1` is an
# error, not a coercion (a strict float still takes an integer: `mains_hz = 50`).
Text = Annotated[str, Strict()]
Number = Annotated[float, Strict(), AllowInfNan(False)]
Flag = Annotated[bool, Strict()]
Texts = Annotated[tuple[Text, ...], BeforeValidator(_one_or_many),
                  WithJsonSchema(_ONE_OR_MANY_SCHEMA)]
LowerTexts = Annotated[Texts, AfterValidator(_lower)]
Regex = Annotated[SitePattern, PlainValidator(_compile),
                  PlainSerializer(lambda p: p.pattern, return_type=str),
                  WithJsonSchema({"type": "string", "format": "regex"})]
RegexText = Annotated[Text, AfterValidator(_check_regex)]
Regexes = Annotated[tuple[Regex, ...], BeforeValidator(_one_or_many),
                    WithJsonSchema(_ONE_OR_MANY_SCHEMA)]


class _Table(BaseModel):
    """A TOML table: unknown keys are errors and a validated config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Keys added after stores were written: repr() leaves them out while they hold their
    #: default, because ``inputs_fingerprint`` (etl/pipeline.py) hashes the repr of some
    #: tables and a config that does not use a new key must not re-ingest its recordings.
    _REPR_IF_NOT_DEFAULT: ClassVar[frozenset[str]] = frozenset()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            if name in self._REPR_IF_NOT_DEFAULT and name is not None \
                    and value == fields[name].get_default(call_default_factory=True):
                continue
            yield name, value


#: ``[layout]`` keys each layout kind reads (discover.py, labels.py, pipeline.py); any
#: other key set in a site's ``[layout]`` is an error, not silently ignored (issue 12).
#: ``extensions`` is accepted for a manifest (which lists its files) because the phantom's
#: manifest site writes it (src/sozstore/phantom/sites.py).
LAYOUT_KEYS: dict[str, frozenset[str]] = {
    "bids": frozenset({"kind", "root", "participants", "extensions", "subjects", "sessions",
                       "tasks", "acquisitions"}),
    "manifest": frozenset({"kind", "root", "participants", "extensions", "manifest",
                           "file_column", "subject_column", "recording_column", "task_column",
                           "bad_column", "manifest_delimiter", "allow_outside_root"}),
}


# ------------------------------------------------------------------------------ tables
class LayoutConfig(_Table):
    """Where a site's recordings are and how they are organised."""

    kind: Literal["bids", "manifest"] = Field(
        description="`bids`: a BIDS tree; `manifest`: files listed in a CSV/TSV manifest.")
    root: Path = Field(
        description="Folder of the recordings, relative to the TOML file's folder "
                    "(`sozstore etl --root` replaces it).")
    extensions: Annotated[Texts, AfterValidator(_dotted_lower)] = Field(
        default=(".edf", ".vhdr", ".fif", ".bdf"),
        description="Signal file extensions to read (bids), case-insensitive.")
    subjects: Texts = Field(default=(), description="Keep only these BIDS subjects (empty: all).")
    sessions: Texts = Field(default=(), description="Keep only these BIDS sessions (empty: all).")
    tasks: Texts = Field(default=(), description="Keep only these BIDS tasks (empty: all).")
    acquisitions: Texts = Field(default=(), description="Keep only these BIDS acquisitions "
                                                "(empty: all).")
    participants: Text | None = Field(
        default="participants.tsv", description="participants.tsv, relative to the root.")
    manifest: Text | None = Field(
        default=None, description="The manifest, relative to the root; required for kind = "
                          "'manifest'.")
    file_column: Text = Field(default="file", description="Manifest column: the signal file, "
                                                  "relative to the root.")
    subject_column: Text = Field(default="subject", description="Manifest column: the subject.")
    recording_column: Text | None = Field(
        default=None, description="Manifest column: the recording's name within its subject.")
    task_column: Text | None = Field(default=None, description="Manifest column: the task.")
    bad_column: Text | None = Field(
        default=None, description="Manifest column: bad contacts in range notation (manifest "
                          "layout; for channels.tsv see channels.bad_column).")
    manifest_delimiter: Text = Field(default=",", description="The manifest's field delimiter.")
    allow_outside_root: Flag = Field(
        default=False,
        description="Whether manifest rows may name files outside the root (`..`, absolute "
                    "paths, links leading out); the store then keeps only their file names.")

    @field_validator("root")
    @classmethod
    def _root_is_not_inside_itself(cls, root: Path) -> Path:
        if root.parts[:1] == (ROOT_PREFIX,):
            raise ValueError(f"cannot start with {ROOT_PREFIX}: {root}")
        return root

    @model_validator(mode="after")
    def _keys_fit_the_layout_kind(self) -> LayoutConfig:
        if self.kind == "manifest" and not self.manifest:
            raise _KeyProblem(("manifest",), "is required when layout.kind = 'manifest'")
        unused = sorted(self.model_fields_set - LAYOUT_KEYS[self.kind])
        if unused:
            hint = (" (channels.tsv bad flags: channels.bad_column)"
                    if "bad_column" in unused else "")
            raise _KeyProblem((unused[0],), f"is not used by layout.kind = {self.kind!r}"
                              f"{hint}")
        return self


class ChannelConfig(_Table):
    """Channel-name normalisation rules and per-site type overrides."""

    strip_prefixes: Texts = Field(default=("EEG ", "POL ", "SEEG ", "ECOG "),
                                  description="Prefixes removed from channel names.")
    strip_suffixes: Texts = Field(default=("-Ref", "-REF", "-ref", "-AV", "+"),
                                  description="Suffixes removed from channel names.")
    case_sensitive: Flag = Field(
        default=False, description="Whether `LA1` and `la1` are different contacts.")
    rename: dict[str, Text] = Field(
        default_factory=dict, description="Raw channel name -> name to use.")
    types: dict[str, ChannelType] = Field(
        default_factory=dict, description="Raw channel name -> channel type.")
    type_patterns: tuple[tuple[RegexText, ChannelType], ...] = Field(
        default=(), description="[regex, type] pairs; the first whose regex `re.search`-es a raw "
                        "name gives its type.")
    default_type: ChannelType = Field(
        default="seeg", description="Type of a channel that no other rule types.")
    bad_column: Text | None = Field(
        default=None,
        description="channels.tsv column flagging bad channels (bids layout), besides "
                    "`status`: a channel is bad if either says so.")
    bad_values: LowerTexts = Field(
        default=("1", "1.0", "true", "yes", "bad"),
        description="Values of `bad_column` meaning bad (case-insensitive).")

    # added with issue 12: a config without them keeps its inputs fingerprint
    _REPR_IF_NOT_DEFAULT = frozenset({"bad_column", "bad_values"})


class LabelSource(_Table):
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

    kind: LabelKind = Field(description="Where the labels are (see above).")
    target: Literal["soz", "resected"] = Field(
        default="soz", description="Which label a `column` source gives.")
    soz_tokens: LowerTexts = Field(
        default=("soz",), description="status_description tokens meaning SOZ (case-insensitive).")
    resected_tokens: LowerTexts = Field(
        default=("resect", "resected"),
        description="status_description tokens meaning resected (case-insensitive).")
    table: Literal["channels", "electrodes"] = Field(
        default="channels", description="The BIDS table holding `column`.")
    column: Text | None = Field(
        default=None, description="The column (required for kind = 'column' and 'events').")
    true_values: LowerTexts = Field(
        default=("yes", "true", "1", "1.0"), description="Values of `column` meaning labelled.")
    false_values: LowerTexts = Field(
        default=(), description="Values of `column` meaning not labelled (others: unknown).")
    path: Path | None = Field(
        default=None, description="The external table (kind = 'external'), relative to the TOML "
                          "file's folder or written $root/... inside the layout root.")
    subject_column: Text = Field(
        default="subject", description="Column of the external table naming the subject.")
    soz_column: Text | None = Field(
        default=None, description="Column with the SOZ contacts in range notation.")
    resected_column: Text | None = Field(
        default=None, description="Column with the resected contacts in range notation.")
    delimiter: Text | None = Field(
        default=None, description="Field delimiter of the external table (default: sniffed).")
    trial_type: Text | None = Field(
        default=None, description="events.tsv trial_type of the rows carrying onset channels.")

    @model_validator(mode="after")
    def _kind_has_its_keys(self) -> LabelSource:
        if self.kind in ("column", "events") and not self.column:
            raise _KeyProblem(("column",), f"is required for kind = {self.kind!r}")
        if self.kind == "external" and self.path is None:
            raise _KeyProblem(("path",), "is required for kind = 'external'")
        if self.kind in ("external", "manifest") and not (self.soz_column
                                                          or self.resected_column):
            raise _KeyProblem(("soz_column",), "or resected_column is required")
        return self


class EventRule(_Table):
    """A regex that turns a site's free-text marker into an event kind."""

    name: Text = Field(default="", description="Rule name, reported as provenance "
                                       "(empty: `rule<i>`, i its place in the list).")
    kind: EventKind = Field(description="The event kind of a matching marker.")
    pattern: Regex = Field(description="Python regex, `re.search`-ed on the stripped text.")


class EventConfig(_Table):
    """Marker rules; the first rule whose pattern ``re.search``-es the text wins."""

    rules: tuple[EventRule, ...] = Field(default=(), description="The rules, in order.")
    ignore: Regexes = Field(default=DEFAULT_EVENT_IGNORE, validate_default=True,
                            description="Regexes of boilerplate markers to drop.")
    onset_channels_column: Text | None = Field(
        default=None, description="events.tsv column listing each seizure's onset channels.")

    @field_validator("rules")
    @classmethod
    def _name_unnamed_rules(cls, rules: tuple[EventRule, ...]) -> tuple[EventRule, ...]:
        return tuple(rule if rule.name else rule.model_copy(update={"name": f"rule{i}"})
                     for i, rule in enumerate(rules))


class OutcomeConfig(_Table):
    """Where the surgical outcome of each subject is written."""

    table: Literal["participants", "manifest", "external", "none"] = Field(
        default="none", description="The table holding outcomes (`none`: no outcomes).")
    path: Path | None = Field(
        default=None, description="The external table (table = 'external'), relative to the TOML "
                          "file's folder or written $root/... inside the layout root.")
    subject_column: Text = Field(default="participant_id", description="Column naming the subject.")
    outcome_column: Text | None = Field(default=None, description="Column with free-text outcome.")
    engel_column: Text | None = Field(default=None, description="Column with the Engel class.")
    ilae_column: Text | None = Field(default=None, description="Column with the ILAE class.")
    value_map: dict[str, Text] = Field(
        default_factory=dict,
        description="Raw value (case-insensitive) -> outcome text, applied to every outcome "
                    "column before parsing; targets are an Engel class (`Engel I`, `1A`), "
                    "an ILAE class (`ILAE 2`), or `S`, `F`, `NR` (seizure free, not, not "
                    "operated). Empty and `n/a` cells are unknown before any mapping.")

    @model_validator(mode="after")
    def _external_has_path(self) -> OutcomeConfig:
        if self.table == "external" and self.path is None:
            raise _KeyProblem(("path",), "is required when outcome.table = 'external'")
        for raw, target in self.value_map.items():
            if not is_outcome_value(target):
                raise _KeyProblem(("value_map", raw), f"is not an outcome value: {target!r}")
        return self


class LimitsConfig(_Table):
    """What a source file may claim before it is refused, and the time one recording may take.

    A header is checked against these before any sample is read: an EDF whose record
    duration says 100000 s makes a 1-MB file a recording of years at 0.005 Hz, which the
    store would resample into billions of samples (issue 11).
    """

    min_source_sfreq_hz: Number = Field(
        default=10.0, gt=0.0,
        description="Lowest sampling rate a source may claim (Hz); below it no EEG rhythm "
                    "above delta is sampled, and the store's rate (>= 64 Hz) would multiply "
                    "the samples.")
    max_source_sfreq_hz: Number = Field(
        default=100_000.0, gt=0.0, description="Highest sampling rate a source may claim (Hz).")
    max_duration_h: Number = Field(
        default=168.0, gt=0.0, description="Longest recording a source may claim (hours).")
    time_budget_s: Number | None = Field(
        default=21_600.0, gt=0.0,
        description="Longest time one recording may take to ingest (s); past it the recording "
                    "fails alone (no key: no budget).")

    @model_validator(mode="after")
    def _range_is_ordered(self) -> LimitsConfig:
        if self.max_source_sfreq_hz <= self.min_source_sfreq_hz:
            raise _KeyProblem(("max_source_sfreq_hz",),
                              f"must be > min_source_sfreq_hz ({self.min_source_sfreq_hz:g}); "
                              f"got {self.max_source_sfreq_hz:g}")
        return self


def _default_store_sfreq_max(validated: dict[str, Any]) -> float:
    # Called only when store_sfreq validated (pydantic skips it otherwise).
    return max(validated["store_sfreq"], DEFAULT_STORE_SFREQ_MAX)


def _default_subject_ids(validated: dict[str, Any]) -> SubjectIds:
    # A manifest site's ids are hospital ids more often than not (docs/etl.md, "Privacy").
    return "hash" if validated["layout"].kind == "manifest" else "source"


class SiteConfig(_Table):
    """A validated site configuration (see the module docstring)."""

    model_config = ConfigDict(title="sozstore site configuration")

    name: Text = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$",
                       description="The site's name in the store (lower case).")
    layout: LayoutConfig
    mains_hz: Number = Field(default=60.0, json_schema_extra={"enum": [50.0, 60.0]},
                             description="Mains frequency (Hz): 50 or 60.")
    store_sfreq: Number = Field(
        default=DEFAULT_STORE_SFREQ, ge=64.0, le=MAX_STORE_SFREQ,
        description="Base rate of the store (Hz): recordings are stored at whole "
                    "multiples of it.")
    store_sfreq_max: Number = Field(
        default_factory=_default_store_sfreq_max, le=MAX_STORE_SFREQ,
        description=f"Highest store rate (Hz), at least store_sfreq "
                    f"(default: max(store_sfreq, {DEFAULT_STORE_SFREQ_MAX:g})).")
    subject_ids: SubjectIds = Field(
        default_factory=_default_subject_ids,
        description="Store subject ids as written by the site (`source`) or as salted "
                    "hashes (`hash`; default for a manifest layout).")
    hash_salt: Text = Field(default="", description="Salt of the subject-id hashes.")
    description: Text = Field(default="", description="Free text shown in the catalog.")
    channels: ChannelConfig = ChannelConfig()
    labels: tuple[LabelSource, ...] = Field(
        default=(), description="SOZ / resection label sources ([[labels]] tables).")
    events: EventConfig = EventConfig()
    outcome: OutcomeConfig = OutcomeConfig()
    flat_threshold_uv: Number = Field(
        default=0.5, ge=0.0,
        description="A channel whose peak-to-peak is below this (uV) is flat.")
    limits: LimitsConfig = LimitsConfig()

    #: The TOML file (set by :func:`parse_site_config`; not a key of the file).
    _source: Path = PrivateAttr()

    @field_validator("mains_hz")
    @classmethod
    def _mains_is_50_or_60(cls, mains_hz: float) -> float:
        if mains_hz not in (50.0, 60.0):
            raise ValueError(f"must be 50 or 60; got {mains_hz}")
        return mains_hz

    @model_validator(mode="after")
    def _cross_table_rules(self) -> SiteConfig:
        if self.store_sfreq_max < self.store_sfreq:
            raise _KeyProblem(("store_sfreq_max",), f"must be within store_sfreq.."
                              f"{MAX_STORE_SFREQ:g} Hz; got {self.store_sfreq_max}")
        if self.channels.bad_column is not None and self.layout.kind != "bids":
            raise _KeyProblem(("channels", "bad_column"), "is not used by layout.kind = "
                              f"{self.layout.kind!r} (manifest bad channels: layout.bad_column)")
        for i, label in enumerate(self.labels):
            if label.kind == "manifest" and self.layout.kind != "manifest":
                raise _KeyProblem(("labels", i, "kind"),
                                  "'manifest' labels need layout.kind = 'manifest'")
        return self

    @property
    def source(self) -> Path:
        """The TOML file this configuration was read from."""
        return self._source

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


def site_config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a site TOML file, from :class:`SiteConfig`.

    Returns
    -------
    dict
        The schema; ``docs/site-config.schema.json`` is this, written with ``indent=2``.
    """
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **SiteConfig.model_json_schema()}


# ------------------------------------------------------------------------------ errors
#: pydantic error types -> what today's messages call the expected type.
_EXPECTED = {"string_type": "str", "float_type": "float", "bool_type": "bool",
             "dict_type": "a table", "model_type": "a table", "tuple_type": "a list"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "less_than_equal": ("<=", "le"),
           "greater_than": (">", "gt"), "less_than": ("<", "lt")}


def _dotted(loc: tuple[str | int, ...]) -> str:
    """``('labels', 0, 'kind')`` -> ``labels[0].kind``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc
                   ).lstrip(".")


def _keys_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys of the table at ``loc`` (for "did you mean"); empty if not a table."""
    model: type[BaseModel] = SiteConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        candidates = (field.annotation, *get_args(field.annotation)) if field else ()
        nested = [t for t in candidates if get_origin(t) is None and isinstance(t, type)
                  and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _problem(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """Key path and one-phrase problem of one pydantic error."""
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx", {})
    if kind == "value_error":
        cause = ctx["error"]
        return (loc + cause.loc if isinstance(cause, _KeyProblem) else loc), str(cause)
    if kind == "missing":
        return loc, "is required"
    if kind in _EXPECTED:
        return loc, f"must be {_EXPECTED[kind]}, got {error['input']!r}"
    if kind == "literal_error":  # ctx["expected"] reads "'a', 'b' or 'c'"
        choices = ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
        return loc, f"must be one of {choices}; got {error['input']!r}"
    if kind in _BOUNDS:
        operator, bound = _BOUNDS[kind]
        return loc, f"must be {operator} {ctx[bound]}; got {error['input']!r}"
    if kind == "finite_number":
        return loc, f"must be a finite number; got {error['input']!r}"
    if kind == "string_pattern_mismatch":
        return loc, f"must match {ctx['pattern']}; got {error['input']!r}"
    return loc, f"{error['msg'].removeprefix('Input ')}; got {error['input']!r}"


def _site_config_error(err: ValidationError, file: Path) -> SiteConfigError:
    """One line naming ``file``, the first problem's key and how many more there are."""
    errors = [e for e in err.errors() if e["type"] != "default_factory_not_called"]
    unknown: dict[tuple[str | int, ...], list[str]] = {}
    for e in errors:
        if e["type"] == "extra_forbidden":
            unknown.setdefault(tuple(e["loc"][:-1]), []).append(str(e["loc"][-1]))
    lines: list[str] = []
    for e in errors:
        if e["type"] != "extra_forbidden":
            loc, problem = _problem(e)
            lines.append(f"{file}: `{_dotted(loc)}` {problem}")
        elif (table := tuple(e["loc"][:-1])) in unknown:
            keys = [(k, difflib.get_close_matches(k, _keys_at(table), n=1))
                    for k in sorted(unknown.pop(table))]
            lines.append(f"{file}: unknown key(s) in [{_dotted(table) or 'top level'}]: "
                         + ", ".join(f"{k} (did you mean {m[0]}?)" if m else k
                                     for k, m in keys))
    more = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
    return SiteConfigError(lines[0] + more)


# ----------------------------------------------------------------------------- loading
def _resolve(path: Path, base: Path, root: Path | None) -> Path:
    """A config path: ``$root/...`` is inside the layout root, another relative path is
    relative to the TOML file's folder ``base``."""
    if root is not None and path.parts[:1] == (ROOT_PREFIX,):
        return root.joinpath(*path.parts[1:]).resolve()
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_paths(config: SiteConfig, base: Path) -> SiteConfig:
    """``config`` with its paths resolved (see :func:`_resolve`)."""
    root = _resolve(config.layout.root, base, None)
    labels = tuple(
        label if label.path is None
        else label.model_copy(update={"path": _resolve(label.path, base, root)})
        for label in config.labels)
    outcome = config.outcome if config.outcome.path is None else config.outcome.model_copy(
        update={"path": _resolve(config.outcome.path, base, root)})
    return config.model_copy(update={
        "layout": config.layout.model_copy(update={"root": root}),
        "labels": labels, "outcome": outcome})


def _read_toml(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise SiteConfigError(f"{file}: site config not found")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise SiteConfigError(f"{file}: not valid TOML ({err})") from None


def validate_site_config(data: dict[str, Any], file: Path) -> SiteConfig:
    """Validate a parsed TOML mapping; its paths stay as written.

    Raises
    ------
    SiteConfigError
        Naming ``file`` and the first bad key.
    """
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as err:
        raise _site_config_error(err, file) from None


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
    return parse_site_config(_read_toml(file), file,
                             root=Path(root).expanduser().resolve() if root else None)


def parse_site_config(data: dict[str, Any], file: Path, *, root: Path | None = None
                      ) -> SiteConfig:
    """Validate an already parsed TOML mapping and resolve its paths.

    Parameters
    ----------
    data : dict
        The parsed TOML.
    file : Path
        The file it came from (error messages, relative paths, ``SiteConfig.source``).
    root : Path, optional
        Replaces ``layout.root`` (which may then be absent).

    Returns
    -------
    SiteConfig
        The validated configuration with absolute paths.
    """
    if root is not None and isinstance(data.get("layout"), dict):
        data = {**data, "layout": {**data["layout"], "root": str(root)}}
    config = _resolve_paths(validate_site_config(data, file), file.parent)
    config._source = file
    return config
