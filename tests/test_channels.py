"""Canonical channel names, types and clinical range notation."""

from __future__ import annotations

import pytest

from sozstore.etl.channels import (
    ContactListError,
    canonical_keys,
    canonical_name,
    expand_contacts,
    infer_types,
    match_contacts,
    split_contact,
)
from sozstore.etl.config import ChannelConfig


@pytest.mark.parametrize("raw, key", [
    ("LA1", "LA1"), ("LA01", "LA1"), ("LA 1", "LA1"), ("EEG LA 01-Ref", "LA1"),
    ("POL LA1", "LA1"), ("LA1-Ref", "LA1"), ("LA1+", "LA1"), ("LA_1", "LA1"),
    ("L'1", "L'1"), ("L’1", "L'1"), ("l'01", "L'1"), ("TA_1", "TA1"), ("TA10", "TA10"),
    ("Fp1", "FP1"), ("EEG Fp1-Ref", "FP1"), ("A2-AV", "A2"), ("ECG ECG1", "ECG1"),
    ("LAH1-LAH2", "LAH1-LAH2"), ("RIPS4-0", "RIPS4-0"), ("PT3'", "PT3'"),
])
def test_canonical_name(raw: str, key: str) -> None:
    assert canonical_name(raw) == key


def test_split_contact() -> None:
    assert split_contact("L'12") == ("L'", 12)
    assert split_contact("LA1") == ("LA", 1)
    assert split_contact("EVENT") == (None, None)
    assert split_contact("LAF14-3") == ("LAF14", 3)
    assert split_contact("LAH1-LAH2") == ("LAH", 1)


def test_case_collisions_keep_case() -> None:
    # RESPect: sT1 and ST1 would collide once upper-cased, so that recording keeps case.
    keys = canonical_keys(["sT1", "ST1", "vT1"])
    assert [k.channel for k in keys] == ["sT1", "ST1", "vT1"]
    assert [k.channel for k in canonical_keys(["sT1", "vT1"])] == ["ST1", "VT1"]


def test_infer_types_scalp_and_ekg_typed_seeg() -> None:
    names = ["C3", "CZ", "EKG1", "LA1", "LA2", "EVENT", "DC01", "$PBT1"]
    keys = canonical_keys(names)
    types = infer_types(keys, tsv_types=["SEEG"] * len(names))
    assert types == ["eeg", "eeg", "ecg", "seeg", "seeg", "misc", "misc", "misc"]


def test_infer_types_depth_shaft_named_like_scalp() -> None:
    names = [f"F{i}" for i in range(1, 11)]
    types = infer_types(canonical_keys(names), tsv_types=["SEEG"] * 10)
    assert set(types) == {"seeg"}


def test_infer_types_overrides_and_tsv() -> None:
    cfg = ChannelConfig(types={"X1": "emg"}, type_patterns=(("^RES", "misc"),))
    keys = canonical_keys(["X1", "RESP1", "G1", "G2"], cfg)
    assert infer_types(keys, tsv_types=[None, None, "ECOG", "ECOG"], config=cfg) == \
        ["emg", "misc", "ecog", "ecog"]


@pytest.mark.parametrize("text, expected", [
    ("A'1-3", ["A'1", "A'2", "A'3"]),
    ("A'1-A'3", ["A'1", "A'2", "A'3"]),
    ("A'1,2,5,7", ["A'1", "A'2", "A'5", "A'7"]),
    ("A’1-2; B3", ["A'1", "A'2", "B3"]),
    ("LA1-LA2: RH4", ["LA1", "LA2", "RH4"]),
    ("LA1, LA3, RH2-3", ["LA1", "LA3", "RH2", "RH3"]),
    ("B'", ["B'*"]),
    ("n/a", []),
    (None, []),
])
def test_expand_contacts(text: str | None, expected: list[str]) -> None:
    assert expand_contacts(text) == expected


@pytest.mark.parametrize("bad", ["1-3", "A5-3", "A1-B4"])
def test_expand_contacts_errors(bad: str) -> None:
    with pytest.raises(ContactListError):
        expand_contacts(bad)


def test_match_contacts_whole_electrode_and_missing() -> None:
    keys = canonical_keys(["B'1", "B'2", "LA01", "LA02"])
    matched, missing = match_contacts(["B'*", "LA2", "ZZ9"], keys)
    assert matched == {"B'1", "B'2", "LA2"}
    assert missing == ["ZZ9"]
