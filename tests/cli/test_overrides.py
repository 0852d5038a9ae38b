import pytest

from nemotron.config.overrides import (
    apply_overrides,
    interpolate,
    looks_like_override,
    parse_override,
)
from nemotron.errors import UserError


def test_values_are_yaml_and_split_at_first_equals():
    assert parse_override("train.train_iters=50").value == 50
    assert parse_override("a.b=1e-3").value == 1e-3
    assert parse_override("a.b=[1, 2]").value == [1, 2]
    assert parse_override("a.b=x=y").value == "x=y"
    assert parse_override("a.b=true").value is True
    assert parse_override("a.b=null").value is None
    assert parse_override("a.b=").value == ""


def test_apply_sets_nested_and_deletes():
    cfg = {"train": {"train_iters": 10}, "peft": {"rank": 8}}
    out = apply_overrides(cfg, [parse_override("train.train_iters=3"), parse_override("~peft"),
                                parse_override("new.key=1")])
    assert out == {"train": {"train_iters": 3}, "new": {"key": 1}}
    assert cfg["train"]["train_iters"] == 10  # not modified in place


def test_delete_of_missing_key_suggests_closest():
    with pytest.raises(UserError) as err:
        apply_overrides({"peft": {"rank": 8}}, [parse_override("~peft.rnak")])
    assert "peft.rnak" in str(err.value) and "peft.rank" in str(err.value)


def test_override_below_a_scalar_is_an_error():
    with pytest.raises(UserError, match="train.train_iters is a int"):
        apply_overrides({"train": {"train_iters": 1}}, [parse_override("train.train_iters.x=1")])


@pytest.mark.parametrize("arg,expected", [
    ("a.b=1", True), ("~a.b", True), ("run.data=nano3-sft-data:v3", True),
    ("--dry-run", False), ("pretrain", False), ("=x", False), ("a b=1", False),
])
def test_looks_like_override(arg, expected):
    assert looks_like_override(arg) is expected


def test_interpolation_keeps_types_and_formats_strings():
    cfg = {"train": {"seq_length": 512}, "data": {"pack_size": "${train.seq_length}",
                                                  "name": "pack-${train.seq_length}"}}
    out = interpolate(cfg)
    assert out["data"] == {"pack_size": 512, "name": "pack-512"}


def test_interpolation_of_artifacts_waits_for_inputs():
    cfg = {"data": {"blend": "${art:data,path}/blend.json"}}
    assert interpolate(cfg)["data"]["blend"] == "${art:data,path}/blend.json"
    out = interpolate(cfg, lambda slot, field: f"/a/{slot}/{field}")
    assert out["data"]["blend"] == "/a/data/path/blend.json"


def test_interpolation_cycle_and_missing_key():
    with pytest.raises(UserError, match="cycle"):
        interpolate({"a": "${b}", "b": "${a}"})
    with pytest.raises(UserError, match="not set"):
        interpolate({"a": "${nope.x}"})
