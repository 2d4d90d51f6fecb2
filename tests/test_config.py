"""Site configs: validation with clear errors; shipped configs load; the published schema."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sozstore.etl.config import (
    SiteConfig,
    SiteConfigError,
    load_site_config,
    site_config_json_schema,
)

REPO = Path(__file__).parents[1]
SHIPPED = sorted((REPO / "src" / "sozstore" / "sites").glob("*.toml"))
PUBLISHED_SCHEMA = REPO / "docs" / "site-config.schema.json"

MINIMAL = """
name = "demo"
mains_hz = 50
[layout]
kind = "bids"
root = "raw"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_minimal(tmp_path: Path) -> None:
    cfg = load_site_config(write(tmp_path, MINIMAL))
    assert cfg.name == "demo"
    assert cfg.mains_hz == 50.0
    assert cfg.store_sfreq == 1000.0
    assert cfg.layout.root == (tmp_path / "raw").resolve()
    assert cfg.subject_ids == "source"


@pytest.mark.parametrize("extra, message", [
    ("colour = 1\n", "unknown key"),
    ("[channels]\ntypes = { X = 'brain' }\n", "types.X"),
    ("[[labels]]\nkind = 'column'\n", "column"),
    ("[[labels]]\nkind = 'telepathy'\n", r"labels\[0\]\.kind"),
    ("[[events.rules]]\nkind = 'onset'\npattern = '(['\n", "not a valid regex"),
    ("[[labels]]\nkind = 'manifest'\nsoz_column = 'x'\n", "layout.kind = 'manifest'"),
])
def test_errors_name_file_and_key(tmp_path: Path, extra: str, message: str) -> None:
    text = MINIMAL.replace('name = "demo"', 'name = "demo"\n' + extra) \
        if not extra.startswith("[") else MINIMAL + extra
    with pytest.raises(SiteConfigError, match=message) as info:
        load_site_config(write(tmp_path, text))
    assert "site.toml" in str(info.value)


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="mains_hz"):
        load_site_config(write(tmp_path, MINIMAL.replace("mains_hz = 50", "mains_hz = 55")))
    with pytest.raises(SiteConfigError, match=r"layout.root` is required"):
        load_site_config(write(tmp_path, MINIMAL.replace('root = "raw"', "")))
    with pytest.raises(SiteConfigError, match="not valid TOML"):
        load_site_config(write(tmp_path, "name = "))
    with pytest.raises(SiteConfigError, match="not found"):
        load_site_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_load(path: Path, tmp_path: Path) -> None:
    cfg = load_site_config(path, root=tmp_path)
    assert cfg.layout.root == tmp_path.resolve()
    for label in cfg.labels:
        if label.path is not None:
            assert tmp_path.resolve() in label.path.parents


def test_defaults_that_depend_on_other_keys(tmp_path: Path) -> None:
    fast = load_site_config(write(tmp_path, MINIMAL.replace("mains_hz = 50",
                                                            "mains_hz = 50\nstore_sfreq = 2500")))
    assert fast.store_sfreq_max == 2500.0
    slow = load_site_config(write(tmp_path, MINIMAL.replace("mains_hz = 50",
                                                            "mains_hz = 50\nstore_sfreq = 500")))
    assert slow.store_sfreq_max == 2000.0
    manifest = load_site_config(write(tmp_path, MINIMAL.replace(
        'kind = "bids"', 'kind = "manifest"\nmanifest = "m.csv"')))
    assert manifest.subject_ids == "hash"
    assert isinstance(load_site_config(write(tmp_path, MINIMAL)).mains_hz, float)


def test_normalised_values(tmp_path: Path) -> None:
    cfg = load_site_config(write(tmp_path, MINIMAL + """extensions = "EDF"
tasks = "ictal"
[[labels]]
kind = "status_description"
soz_tokens = ["SOZ"]
[[labels]]
kind = "external"
path = "$root/clinical.csv"
soz_column = "SOZ"
[[events.rules]]
kind = "onset"
pattern = "^a"
[[events.rules]]
name = "named"
kind = "offset"
pattern = "^b"
"""))
    assert cfg.layout.extensions == (".edf",)
    assert cfg.layout.tasks == ("ictal",)
    assert cfg.labels[0].soz_tokens == ("soz",)
    assert cfg.labels[1].path == (tmp_path / "raw" / "clinical.csv").resolve()
    assert [rule.name for rule in cfg.events.rules] == ["rule0", "named"]
    assert cfg.source == (tmp_path / "site.toml").resolve()


def test_root_override_replaces_a_missing_root(tmp_path: Path) -> None:
    cfg = load_site_config(write(tmp_path, MINIMAL.replace('root = "raw"', "")),
                           root=tmp_path / "elsewhere")
    assert cfg.layout.root == (tmp_path / "elsewhere").resolve()


@pytest.mark.parametrize("change, message", [
    (("mains_hz = 50", "mains_hz = 50\nmains_hertz = 50"),
     r"unknown key\(s\) in \[top level\]: mains_hertz \(did you mean mains_hz\?\)"),
    (('kind = "bids"', 'kind = "bids"\nextension = ".edf"'),
     r"\[layout\]: extension \(did you mean extensions\?\)"),
    (("mains_hz = 50", "mains_hz = 50\nflat_threshold_uv = '1'"),
     "`flat_threshold_uv` must be float, got '1'"),
    (("mains_hz = 50", "mains_hz = 50\nstore_sfreq = 2000\nstore_sfreq_max = 1000"),
     "`store_sfreq_max` must be within store_sfreq"),
    (("mains_hz = 50", "mains_hz = 50\nstore_sfreq = 10"), "`store_sfreq` must be >= 64"),
    (('name = "demo"', 'name = "Demo"'), "`name` must match"),
    (('root = "raw"', 'root = "$root/raw"'), r"`layout.root` cannot start with \$root"),
    (('kind = "bids"', 'kind = "manifest"'),
     "`layout.manifest` is required when layout.kind = 'manifest'"),
    (('root = "raw"', 'root = "raw"\n[channels]\ncase_sensitive = 1'),
     "`channels.case_sensitive` must be bool, got 1"),
    (('root = "raw"', 'root = "raw"\n[outcome]\ntable = "external"'),
     "`outcome.path` is required when outcome.table = 'external'"),
    (("mains_hz = 50", "mains_hz = 50\ncolour = 1\nlabels = 3"), r"\(and 1 more problem"),
])
def test_one_line_errors(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(SiteConfigError, match=message) as info:
        load_site_config(write(tmp_path, MINIMAL.replace(*change)))
    assert str(info.value).startswith(str((tmp_path / "site.toml").resolve()))
    assert "\n" not in str(info.value)


def test_validated_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_site_config(write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError):
        cfg.layout.bad_column = "bad"


def test_repr_of_fingerprinted_sections_is_unchanged(tmp_path: Path) -> None:
    """``inputs_fingerprint`` (etl/pipeline.py) hashes repr() of these sections, so a new
    repr would re-ingest every recording of every store: these strings are what the
    dataclasses before the pydantic models printed."""
    cfg = load_site_config(write(tmp_path, MINIMAL + """[[labels]]
kind = "column"
column = "soz"
true_values = ["YES"]
[[events.rules]]
kind = "onset"
pattern = "^sz"
"""))
    assert repr(cfg.channels) == (
        "ChannelConfig(strip_prefixes=('EEG ', 'POL ', 'SEEG ', 'ECOG '), strip_suffixes="
        "('-Ref', '-REF', '-ref', '-AV', '+'), case_sensitive=False, rename={}, types={}, "
        "type_patterns=(), default_type='seeg')")
    assert repr(cfg.labels) == (
        "(LabelSource(kind='column', target='soz', soz_tokens=('soz',), resected_tokens="
        "('resect', 'resected'), table='channels', column='soz', true_values=('yes',), "
        "false_values=(), path=None, subject_column='subject', soz_column=None, "
        "resected_column=None, delimiter=None, trial_type=None),)")
    assert repr(cfg.events) == (
        "EventConfig(rules=(EventRule(name='rule0', kind='onset', pattern=re.compile('^sz')),"
        "), ignore=(re.compile('^\\\\+\\\\d+(\\\\.\\\\d+)?$'), "
        "re.compile('^Segment: REC START'), re.compile('^A1\\\\+A2 OFF$')), "
        "onset_channels_column=None)")


def test_published_schema_is_current() -> None:
    published = json.loads(PUBLISHED_SCHEMA.read_text(encoding="utf-8"))
    assert published == site_config_json_schema(), (
        "docs/site-config.schema.json is stale; regenerate it with `python -c \"import json; "
        "from sozstore.etl.config import site_config_json_schema as s; "
        "print(json.dumps(s(), indent=2))\" > docs/site-config.schema.json`")


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tables = [schema, *schema["$defs"].values()]
    return {f"{table['title']}.{key}": prop for table in tables
            for key, prop in table["properties"].items()}


def test_schema_describes_every_key() -> None:
    schema = site_config_json_schema()
    assert schema["additionalProperties"] is False
    assert all(table["additionalProperties"] is False for table in schema["$defs"].values())
    undocumented = [key for key, prop in _properties(schema).items()
                    if "description" not in prop and "$ref" not in prop]
    assert not undocumented


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_match_the_schema(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    config = SiteConfig.model_validate(data)
    assert config.name == path.stem
    assert set(data) <= set(site_config_json_schema()["properties"])


def test_limits_and_outside_root_defaults(tmp_path: Path) -> None:
    """Issue 11: what a header may claim, the time budget and the root rule have defaults
    and are range-checked (probes in test_hardening_input.py)."""
    cfg = load_site_config(write(tmp_path, MINIMAL))
    assert (cfg.limits.min_source_sfreq_hz, cfg.limits.max_source_sfreq_hz,
            cfg.limits.max_duration_h, cfg.limits.time_budget_s) == (10.0, 1e5, 168.0, 21600.0)
    assert cfg.layout.allow_outside_root is False
    assert "limits" not in cfg.fingerprint_params()
    with pytest.raises(SiteConfigError, match=r"`flat_threshold_uv` must be >= 0"):
        load_site_config(write(tmp_path, "flat_threshold_uv = -0.5\n" + MINIMAL))


def test_site_patterns_compare_and_print_like_re(tmp_path: Path) -> None:
    text = MINIMAL + "[[events.rules]]\nkind = 'onset'\npattern = '(?i)^sz'\n"
    first = load_site_config(write(tmp_path, text))
    second = load_site_config(write(tmp_path, text))
    assert first.events == second.events and hash(first.events) == hash(second.events)
    assert repr(first.events.rules[0].pattern) == "re.compile('(?i)^sz', re.IGNORECASE)"
    assert first.events.rules[0].pattern.search("SZ onset") is not None
    assert first.model_dump(mode="json")["events"]["rules"][0]["pattern"] == "(?i)^sz"
