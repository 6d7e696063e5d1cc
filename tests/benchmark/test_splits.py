"""Tests of opgrpo.benchmark.splits and the packaged sample benchmark (opgrpo.benchmark.sample_data_path)."""
from __future__ import annotations

import pytest

from opgrpo.benchmark import (
    SPLIT_NAMES,
    Item,
    Perspective,
    load_items,
    sample_data_path,
    split_by_count,
    train_val_split,
)


def make_items(counts: list[int]) -> list[Item]:
    return [Item(f"i{k}", f"s{k}", [Perspective(f"N{j}", f"t{j}.") for j in range(c)], f"x:{k}")
            for k, c in enumerate(counts)]


# ------------------------------------------------------------------------------------------ splits

def test_train_val_split_sizes_and_determinism():
    items = make_items([5] * 100)
    train, val = train_val_split(items)
    assert (len(train), len(val)) == (90, 10)
    assert {i.id for i in train} | {i.id for i in val} == {i.id for i in items}
    assert not {i.id for i in train} & {i.id for i in val}
    assert train_val_split(items) == (train, val)
    assert train_val_split(items, seed=7)[1] != val
    assert [len(s) for s in train_val_split(make_items([5] * 36))] == [32, 4]  # ceil(3.6)
    assert [len(s) for s in train_val_split(make_items([5]))] == [1, 0]
    assert train_val_split([]) == ([], [])
    with pytest.raises(ValueError):
        train_val_split(items, val_fraction=1.0)


def test_train_val_split_matches_datasets_train_test_split():
    from datasets import Dataset

    items = make_items([5] * 57)
    ref = Dataset.from_dict({"id": [i.id for i in items]}).train_test_split(test_size=0.1, seed=42)
    train, val = train_val_split(items, 0.1, 42)
    assert [i.id for i in train] == ref["train"]["id"] and [i.id for i in val] == ref["test"]["id"]


def test_split_by_count_buckets():
    groups = split_by_count(make_items([5, 10, 11, 12, 7, 5]))
    assert list(groups) == list(SPLIT_NAMES)
    assert {k: [i.id for i in v] for k, v in groups.items()} == {
        "5": ["i0", "i5"], "6": [], "7": ["i4"], "8": [], "9": [], "10": ["i1"], ">10": ["i2", "i3"]}
    with_small = split_by_count(make_items([3, 9]))
    assert list(with_small) == ["<5", *SPLIT_NAMES] and [i.id for i in with_small["<5"]] == ["i0"]


# ------------------------------------------------------------------------------------------ sample

def test_sample_files_load_cleanly_with_documented_counts():
    train, e1 = load_items(sample_data_path("train"), on_error="fail")
    test, e2 = load_items(sample_data_path("test"), on_error="fail")
    assert e1 == [] and e2 == []
    assert len(train) == 36 and len(test) == 14
    assert sorted(i.num_perspectives for i in train) == [5] * 5 + [6] * 5 + [7] * 5 + [8] * 5 + [9] * 4 + [10] * 4 + [11] * 4 + [12] * 4
    assert {k: len(v) for k, v in split_by_count(test).items()} == {k: 2 for k in SPLIT_NAMES}
    assert sorted(i.num_perspectives for i in split_by_count(test)[">10"]) == [11, 12]
    everything = train + test
    assert len({i.id for i in everything}) == 50 and len({i.situation for i in everything}) == 50
    for item in everything:
        names = [p.name for p in item.perspectives]
        assert len(set(names)) == len(names), item.id
        assert all(p.text and "\n" not in p.text for p in item.perspectives)


def test_sample_data_path_rejects_unknown_name():
    assert sample_data_path().name == "sample_train.csv"
    with pytest.raises(ValueError, match="unknown sample"):
        sample_data_path("dev")
