"""The output identity: a hash of the output-shaping projection of the config and the inputs'
identities. Overrides that only say where or how a job runs keep it (so `pipe` skips the stage);
overrides that change what is produced give a new one."""

import json

import pytest

from nemotron.config.schema import StageConfig
from nemotron.config.shaping import left_out
from nemotron.config.stage import BY_ENTRY, BY_PREP_OUTPUT
from nemotron.launch.plan import build_plan
from nemotron.profiles import load_env
from nemotron.recipes import get_family

# Changing any of these keeps the output: left out of the identity, declared in the schema.
KEEP_PRETRAIN = [
    "run.env.nodes=2", "run.env.time=01:00:00", "run.env.partition=batch", "run.wandb=false",
    "logging.wandb_project=x", "logging.tensorboard=true", "train.log_interval=5",
    "train.eval_interval=7", "train.eval_iters=3", "train.save_interval=9",
    "checkpoint.save_interval=3", "checkpoint.keep_last=5", "train.num_workers=2",
    "parallel.ep=2", "run.container=nvcr.io/x:1",
]
CHANGE_PRETRAIN = [
    "train.train_iters=301", "optimizer.lr=1e-3", "run.seed=1", "model.hidden_size=64",
    "scheduler.warmup_iters=5", "data.split=90,5,5", "train.global_batch_size=16",
    "checkpoint.load_optimizer=false", "moe.expert_bias_update=false",
    "optimizer.weight_decay=0.05",
]
KEEP_PREP = ["data.num_workers=1", "data.strict=true", "data.force=true"]
CHANGE_PREP = ["data.append_eod=false", "data.sources.0.sample=500", "data.split_seed=3",
               "data.splits.valid=0.05", "data.shard_bytes=1000000"]

# Every field the identity leaves out, reviewed: adding one to the schema fails this test until
# it is listed here, so nothing leaves the identity by accident.
LEFT_OUT = {
    "run.data", "run.model", "run.inputs", "run.env", "run.container", "run.wandb", "parallel",
    "logging",
    "train.log_interval", "train.eval_interval", "train.eval_iters", "train.save_interval",
    "train.num_workers", "checkpoint.save_interval", "checkpoint.keep_last", "grpo.ray",
    "eval.deployment", "data.num_workers", "data.strict", "data.force",
    "dpo.val_period", "dpo.val_global_batch_size",
}


def _plan(stage: str, overrides: list[str], data_dir=None):
    family = get_family("nano3")
    extra = [f"run.data={data_dir}"] if data_dir else []
    return build_plan(family, family.stage(stage), config="tiny", overrides=[*extra, *overrides],
                      env=load_env(), profile_name=None, argv=["nemotron"])


def _identity(stage: str, overrides: list[str], data_dir=None) -> str:
    (out,) = _plan(stage, overrides, data_dir).outputs.values()
    return out.identity


@pytest.fixture
def blend_dir(tmp_path):
    folder = tmp_path / "blend"
    folder.mkdir()
    (folder / "blend.json").write_text(json.dumps({"train": ["1", str(folder / "x")]}))
    return folder


@pytest.mark.parametrize("override", KEEP_PRETRAIN)
def test_runtime_overrides_keep_the_pretrain_identity(home, blend_dir, override):
    assert _identity("pretrain", [override], blend_dir) == _identity("pretrain", [], blend_dir)


@pytest.mark.parametrize("override", CHANGE_PRETRAIN)
def test_shaping_overrides_change_the_pretrain_identity(home, blend_dir, override):
    assert _identity("pretrain", [override], blend_dir) != _identity("pretrain", [], blend_dir)


@pytest.mark.parametrize("override", KEEP_PREP)
def test_runtime_overrides_keep_the_prep_identity(home, override):
    assert _identity("prep-pretrain", [override]) == _identity("prep-pretrain", [])


@pytest.mark.parametrize("override", CHANGE_PREP)
def test_shaping_overrides_change_the_prep_identity(home, override):
    assert _identity("prep-pretrain", [override]) != _identity("prep-pretrain", [])


def test_the_identity_leaves_out_exactly_the_reviewed_fields():
    found = set()
    for cls in [StageConfig, *BY_ENTRY.values(), *BY_PREP_OUTPUT.values()]:
        found |= set(left_out(cls))
    assert found == LEFT_OUT


def test_the_same_input_by_version_alias_or_folder_gives_one_identity(cli, home):
    assert cli("nano3", "data", "prep", "pretrain", "-c", "tiny").exit_code == 0
    from nemotron.lineage import Store

    art = Store.open(home / "artifacts" / "lineage.db").resolve("nano3-pretrain-data-tiny")
    refs = ["nano3-pretrain-data-tiny:latest", "nano3-pretrain-data-tiny:v0",
            "nano3-pretrain-data-tiny", str(art.path)]
    identities = {ref: _identity("pretrain", [f"run.data={ref}"]) for ref in refs}
    assert len(set(identities.values())) == 1, identities
    plan = _plan("pretrain", [f"run.data={art.path}"])
    assert plan.inputs["data"].version == "v0"  # the folder resolves to its artifact


def test_pipe_skips_for_runtime_overrides_and_reruns_for_shaping_ones(cli, home):
    base = ["nano3", "pipe", "-c", "tiny", "--to", "prep-pretrain"]
    assert cli(*base).exit_code == 0
    for override in KEEP_PREP:
        res = cli(*base, "--dry-run", override)
        assert res.exit_code == 0, res.output
        assert "skip" in res.stdout.lower() and "run " not in res.stdout.lower(), override
    for override in CHANGE_PREP:
        res = cli(*base, "--dry-run", override)
        assert res.exit_code == 0, res.output
        assert "no output with this identity yet" in res.stdout, override
