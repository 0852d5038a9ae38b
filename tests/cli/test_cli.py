"""The command tree, global options, dry-runs and bad input, through the real entry point."""

import re
import shutil
import textwrap

import pytest

from tests.cli_fixtures import REPO, shipped_configs


def test_help_lists_families_and_tools(cli):
    res = cli("--help")
    assert res.exit_code == 0
    for word in ("nano3", "super3", "artifacts", "jobs", "profiles", "config", "recipes"):
        assert word in res.stdout
    assert "Examples" in res.stdout


@pytest.mark.parametrize("family", ["nano3", "super3"])
def test_family_command_tree(cli, family):
    top = cli(family, "--help").stdout
    for word in ("pretrain", "sft", "rl", "eval", "pipe", "data", "model"):
        assert re.search(rf"^│ +{word}\b", top, re.M), word
    assert all(w in cli(family, "data", "prep", "--help").stdout for w in ("pretrain", "sft", "rl"))
    model = cli(family, "model", "--help").stdout
    for word in ("import", "export", "merge-lora"):
        assert word in model
    assert ("quantize" in model) == (family == "super3")
    assert "--peft" in cli(family, "sft", "--help").stdout
    assert "--peft" not in cli(family, "pretrain", "--help").stdout


@pytest.mark.parametrize("family,stage,config", list(shipped_configs()))
def test_every_shipped_config_dry_runs_locally(cli, home, family, stage, config):
    from nemotron.recipes import get_family

    words = get_family(family).stage(stage).command
    res = cli(family, *words, "-c", config, "--dry-run")
    assert res.exit_code == 0, res.output
    assert "plan:" in res.stdout and "decision" in res.stdout and "resolved config" in res.stdout
    assert f"nemotron.stages.{get_family(family).stage(stage).entry}" in res.stdout
    assert not home.exists(), "a dry-run must not write anything"


def test_global_options_anywhere(cli):
    a = cli("nano3", "pretrain", "-c", "tiny", "--dry-run", "train.train_iters=70")
    b = cli("-c", "tiny", "nano3", "train.train_iters=70", "-d", "pretrain")
    c = cli("nano3", "-d", "-c", "tiny", "pretrain", "train.train_iters=70")
    for res in (a, b, c):
        assert res.exit_code == 0, res.output
        assert "train_iters: 70" in res.stdout


def test_dry_run_shows_cost_and_identity_changes_with_config(cli):
    a = cli("nano3", "pretrain", "--dry-run")
    assert "31.6B total / 3.6B active" in a.stdout
    assert "GPU-hours" in a.stdout and "25.00T tokens" in a.stdout
    ident = re.findall(r"identity (\w{12})", a.stdout)
    b = cli("nano3", "pretrain", "--dry-run", "optimizer.lr=2e-3")
    assert re.findall(r"identity (\w{12})", b.stdout) != ident
    c = cli("nano3", "pretrain", "--dry-run")
    assert re.findall(r"identity (\w{12})", c.stdout) == ident


def test_peft_flag_sets_lora(cli):
    res = cli("nano3", "sft", "-c", "tiny", "--peft", "lora", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "peft:\n  type: lora\n  rank: 32" in res.stdout


def test_config_show_and_validate(cli):
    res = cli("config", "show", "nano3", "pretrain", "-c", "tiny", "train.train_iters=90")
    assert res.exit_code == 0, res.output
    assert "train_iters: 90" in res.stdout
    res = cli("config", "validate")
    assert res.exit_code == 0, res.output
    assert "fail" not in res.stdout


def test_recipes_list(cli):
    res = cli("recipes", "list")
    assert res.exit_code == 0
    assert "prep-pretrain" in res.stdout and "super3" in res.stdout


# --------------------------------------------------------------------------------------------
# bad input: one or two lines, exit 2, no traceback
def _assert_user_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def test_unknown_override_key_names_path_and_closest(cli):
    res = cli("nano3", "pretrain", "-c", "tiny", "--dry-run", "train.train_itres=5")
    _assert_user_error(res, "train.train_itres", "train.train_iters")


def test_mistyped_override_value(cli):
    res = cli("nano3", "pretrain", "-c", "tiny", "--dry-run", "train.train_iters=many")
    _assert_user_error(res, "train.train_iters", "many")


def test_cross_field_rules_say_what_to_change(cli):
    res = cli("nano3", "pretrain", "--dry-run", "parallel.ep=3")
    _assert_user_error(res, "parallel.ep=3", "128", "use one of")
    res = cli("nano3", "pretrain", "--dry-run", "parallel.sp=false")
    _assert_user_error(res, "parallel.sp=true")
    res = cli("nano3", "pretrain", "--dry-run", "parallel.cp=2", "train.seq_length=8190")
    _assert_user_error(res, "2 x parallel.cp")
    res = cli("nano3", "pretrain", "-c", "tiny", "--dry-run", "model.num_layers=9")
    _assert_user_error(res, "num_layers=8")
    res = cli("nano3", "pretrain", "-c", "tiny", "--dry-run", "scheduler.warmup_iters=300")
    _assert_user_error(res, "exceed train.train_iters")


def test_world_size_rules_need_the_profile(cli, env_toml):
    env = env_toml('[c]\nexecutor = "slurm"\npartition = "p"\nnodes = 1\ngpus_per_node = 6\n')
    res = cli("nano3", "pretrain", "--dry-run", "--env-file", str(env), "--run", "c")
    _assert_user_error(res, "6 GPUs", "tp x pp x cp")
    env = env_toml('[c]\nexecutor = "slurm"\nnodes = 1\ngpus_per_node = 8\n', "b.toml")
    res = cli("nano3", "pretrain", "--dry-run", "--env-file", str(env), "--run", "c",
              "train.global_batch_size=3071", "parallel.ep=1")
    _assert_user_error(res, "global_batch_size=3071", "multiple of")


def test_missing_config_lists_builtins(cli):
    res = cli("nano3", "pretrain", "-c", "huge", "--dry-run")
    _assert_user_error(res, "no config 'huge'", "default", "tiny")


def test_run_and_batch_together(cli):
    res = cli("nano3", "pretrain", "-c", "tiny", "--run", "a", "--batch", "b")
    _assert_user_error(res, "--run and --batch")


def test_unknown_profile_lists_known(cli, env_toml):
    env = env_toml('[gpu-a]\nexecutor = "slurm"\n[gpu-b]\nexecutor = "slurm"\n')
    res = cli("nano3", "pretrain", "-c", "tiny", "-d", "--env-file", str(env), "--run", "gpu-c")
    _assert_user_error(res, "unknown profile 'gpu-c'", "gpu-a", "local")


def test_missing_env_file(cli):
    res = cli("nano3", "pretrain", "-c", "tiny", "-d", "--env-file", "/nonexistent/env.toml")
    _assert_user_error(res, "env file not found", "/nonexistent/env.toml")


def test_malformed_toml_names_line(cli, env_toml):
    env = env_toml('[a]\nexecutor = "slurm"\nnodes = = 2\n')
    res = cli("profiles", "list", "--env-file", str(env))
    _assert_user_error(res, str(env), "line 3")


def test_unknown_profile_key_names_file_and_key(cli, env_toml):
    env = env_toml('[a]\nexecutor = "slurm"\npartiton = "x"\n')
    res = cli("profiles", "list", "--env-file", str(env))
    _assert_user_error(res, str(env), "partiton", "partition")


def test_malformed_yaml_config_names_line(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  backend: local\n train: [1, 2\n")
    res = cli("nano3", "pretrain", "-c", str(bad), "--dry-run")
    _assert_user_error(res, f"{bad}:3")


def test_unexpected_positional_argument(cli):
    res = cli("nano3", "pretrain", "-c", "tiny", "-d", "oops")
    _assert_user_error(res, "oops")


# --------------------------------------------------------------------------------------------
def test_new_family_folder_appears(cli, tmp_path, monkeypatch):
    root = tmp_path / "recipes"
    shutil.copytree(REPO / "recipes", root)
    fam = root / "mini3"
    (fam / "pretrain").mkdir(parents=True)
    (fam / "family.yaml").write_text(textwrap.dedent("""\
        name: mini3
        title: Mini 3
        description: a test family
        stages:
          pretrain:
            entry: pretrain
            help: Pretrain the mini model.
            inputs: {data: {kind: pretrain-data}}
            outputs: {model: {kind: model, name: pretrain-model}}
        pipe:
          default: [pretrain]
        """))
    (fam / "pretrain" / "default.yaml").write_text(
        "defaults: [configs/models/nano3-tiny]\nrun: {backend: local}\n"
        "train: {global_batch_size: 2, seq_length: 64, train_iters: 3}\noptimizer: {lr: 1.0e-3}\n"
    )
    monkeypatch.setenv("NEMOTRON_RECIPES_DIR", str(root))
    from nemotron.recipes import _discover

    _discover.cache_clear()
    try:
        assert "mini3" in cli("--help").stdout
        res = cli("mini3", "pretrain", "--dry-run", "run.data=/nonexistent")
        assert res.exit_code == 0, res.output
        assert "mini3-pretrain-model" in res.stdout
    finally:
        _discover.cache_clear()


def test_eval_takes_several_models_in_one_call(cli, tmp_path):
    folders = {}
    for name in ("rl", "sft", "base"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
    res = cli("nano3", "eval", "-c", "tiny", "--dry-run", f"run.model={folders['rl']}",
              f"run.inputs.sft={folders['sft']}", f"run.inputs.base={folders['base']}")
    assert res.exit_code == 0, res.output
    inputs = res.stdout[res.stdout.index("inputs"):]
    for slot in ("model", "sft", "base"):
        assert slot in inputs and str(folders[slot if slot != "model" else "rl"]) in inputs
    alone = cli("nano3", "eval", "-c", "tiny", "--dry-run", f"run.model={folders['rl']}")
    assert alone.exit_code == 0 and str(folders["sft"]) not in alone.stdout
    bad = cli("nano3", "eval", "-c", "tiny", "--dry-run", f"run.model={folders['rl']}",
              f"run.inputs.sfft={folders['sft']}")
    assert bad.exit_code == 2 and "run.inputs.sfft" in bad.output and "sft" in bad.output
