"""Site configs: validation with clear errors; shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from sozstore.etl.config import SiteConfigError, load_site_config

SHIPPED = sorted((Path(__file__).parents[1] / "src" / "sozstore" / "sites").glob("*.toml"))

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
    with pytest.raises(SiteConfigError, match="layout.root` is required"):
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
