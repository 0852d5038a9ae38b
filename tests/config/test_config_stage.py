"""Decoding a stage config: custom files and their names, typed data sections and their hints,
list indices in overrides, and a pipe as strict as a single stage."""

import pytest

from nemotron.config.overrides import apply_overrides, parse_override
from nemotron.errors import UserError
from tests.cli_fixtures import REPO

TINY_PREP = REPO / "recipes" / "nano3" / "prep-pretrain" / "tiny.yaml"


def _error(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    return res.output


def test_a_pipe_typo_is_an_error_with_the_closest_key(cli):
    out = _error(cli("nano3", "pipe", "-c", "tiny", "--dry-run", "trian.train_iters=5"))
    assert "trian.train_iters" in out and "did you mean train.train_iters?" in out


def test_a_stage_prefixed_pipe_override_is_checked_by_that_stage(cli):
    out = _error(cli("nano3", "pipe", "-c", "tiny", "--dry-run", "sft.train.trian_iters=5"))
    assert "nano3 sft -c tiny" in out and "did you mean train.train_iters?" in out


def test_pipe_routes_a_section_only_to_the_stages_that_have_it(cli):
    res = cli("nano3", "pipe", "-c", "tiny", "--dry-run", "train.train_iters=80",
              "data.pack_size=256")
    assert res.exit_code == 0, res.output
    from nemotron.launch.pipe import split_overrides
    from nemotron.recipes import get_family

    family = get_family("nano3")
    chain = list(family.pipe["tiny"])
    routed = split_overrides(family, chain, "tiny", ["train.train_iters=80", "run.seed=3",
                                                      "data.append_eod=false"])
    assert [s for s, ovs in routed.items() if "train.train_iters=80" in ovs] == \
        ["pretrain", "sft"]
    assert all("run.seed=3" in ovs for ovs in routed.values())
    assert [s for s, ovs in routed.items() if "data.append_eod=false" in ovs] == \
        ["prep-pretrain"]


@pytest.mark.parametrize("stage,key,closest", [
    (("data", "prep", "pretrain"), "data.append_eodd=true", "data.append_eod"),
    (("data", "prep", "sft"), "data.pack_sise=64", "data.pack_size"),
    (("data", "prep", "pretrain"), "data.sources.0.wieght=2", "data.sources.0.weight"),
    (("sft",), "data.pack_sise=64", "data.pack_size"),
    (("pretrain",), "data.splitt=1", "data.split"),
])
def test_data_keys_are_checked_against_the_stage_kind(cli, stage, key, closest):
    out = _error(cli("nano3", *stage, "-c", "tiny", "--dry-run", key))
    assert f"did you mean {closest}?" in out


def test_stages_without_data_options_refuse_them(cli):
    out = _error(cli("nano3", "rl", "-c", "tiny", "--dry-run", "data.pack_size=64"))
    assert "unknown key 'data.pack_size'" in out


def test_list_indices_in_overrides():
    cfg = {"data": {"sources": [{"name": "a"}, {"name": "b"}]}}
    out = apply_overrides(cfg, [parse_override("data.sources.1.sample=5"),
                                parse_override("~data.sources.0")])
    assert out == {"data": {"sources": [{"name": "b", "sample": 5}]}}
    with pytest.raises(UserError, match="has 2 element"):
        apply_overrides(cfg, [parse_override("data.sources.2.sample=5")])
    with pytest.raises(UserError, match="index it with a number"):
        apply_overrides(cfg, [parse_override("data.sources.first.sample=5")])


def test_a_custom_file_is_named_by_its_stem_or_name_key(cli, tmp_path):
    mine = tmp_path / "my-prep.yaml"
    mine.write_text(TINY_PREP.read_text())
    res = cli("nano3", "data", "prep", "pretrain", "-c", str(mine), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "nano3-pretrain-data-my-prep" in res.stdout and str(mine) in res.stdout
    mine.write_text("name: exp1\n" + TINY_PREP.read_text())
    res = cli("nano3", "data", "prep", "pretrain", "-c", str(mine), "--dry-run")
    assert "nano3-pretrain-data-exp1" in res.stdout


def test_a_custom_file_may_not_take_a_builtin_name(cli, tmp_path):
    copy = tmp_path / "tiny.yaml"
    copy.write_text(TINY_PREP.read_text())
    out = _error(cli("nano3", "data", "prep", "pretrain", "-c", str(copy), "--dry-run"))
    assert "built-in config" in out and "name:" in out
    # the built-in itself, given by its path, is the built-in
    res = cli("nano3", "data", "prep", "pretrain", "-c", str(TINY_PREP), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "nano3-pretrain-data-tiny" in res.stdout


@pytest.mark.parametrize("name", ["has space", "-dash", "x" * 80, "a/b"])
def test_a_config_name_that_cannot_name_artifacts_is_refused(cli, tmp_path, name):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"name: '{name}'\n" + TINY_PREP.read_text())
    out = _error(cli("nano3", "data", "prep", "pretrain", "-c", str(mine), "--dry-run"))
    assert "cannot name artifacts" in out


def test_pipe_refuses_a_file_with_a_clear_message(cli, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(TINY_PREP.read_text())
    out = _error(cli("nano3", "pipe", "-c", str(mine), "--dry-run"))
    assert "built-in config" in out
