"""Dry-runs of every cluster stage and model command on a Slurm profile, through the real CLI:
the plan names the container (the config's or the family's), the exact stage command, and the
backend; with the Slurm renderer present, the sbatch script too. Nothing is written."""

from __future__ import annotations

import pytest

from nemotron.cli.main import run
from tests.backends.cluster.cluster_helpers import load_config
from tests.backends.cluster.test_cluster_golden import CONFIGS

ENV = """
[cluster]
executor = "slurm"
account = "acct"
partition = "batch"
gpus_per_node = 8
job_dir = "/lustre/jobs"
nemotron_home = "/lustre/nemotron"
mounts = ["/lustre:/lustre"]
"""


def _has_sbatch_renderer() -> bool:
    try:
        from nemotron.launch.slurm import render_sbatch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def dry_run(tmp_path, monkeypatch, capsys):
    env = tmp_path / "env.toml"
    env.write_text(ENV)
    monkeypatch.setenv("NEMOTRON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.chdir(tmp_path)

    def invoke(family: str, words: list[str], config: str, *extra: str) -> str:
        try:
            run([family, *words, "-c", config, "--dry-run", "--env-file", str(env),
                 "--run", "cluster", *extra], standalone=False)
        except SystemExit as exc:  # typer.Exit from the stage command
            assert not exc.code, capsys.readouterr()
        out = capsys.readouterr()
        assert not (tmp_path / "home").exists(), "a dry-run must not write anything"
        return out.out + out.err

    return invoke


def expected_container(family: str, stage_name: str, cfg) -> str:
    from nemotron.recipes import get_family

    return cfg.run.container or get_family(family).stage(stage_name).container


@pytest.mark.parametrize("family,stage,config", CONFIGS)
def test_dry_run_shows_container_command_and_backend(family, stage, config, dry_run,
                                                      monkeypatch):
    if not _has_sbatch_renderer():  # the Slurm launcher is another module; show the rest
        monkeypatch.setattr("nemotron.cli.render.sbatch_for", lambda plan: None)
    st, cfg = load_config(family, stage, config)
    out = dry_run(family, list(st.command), config)
    assert f"container {expected_container(family, stage, cfg)}" in out
    assert f"-m nemotron.stages.{st.entry} --job /lustre/nemotron/jobs/" in out
    assert f"backend   {cfg.run.backend}" in out
    assert "executor: slurm" in out


@pytest.mark.parametrize("family,stage,config", CONFIGS)
def test_dry_run_shows_the_sbatch_script(family, stage, config, dry_run):
    if not _has_sbatch_renderer():
        pytest.skip("nemotron.launch.slurm.render_sbatch (the Slurm launcher) is not there yet")
    st, _ = load_config(family, stage, config)
    out = dry_run(family, list(st.command), config)
    assert "sbatch script" in out and "#SBATCH" in out


def test_the_backend_description_runs_the_translation_at_plan_time():
    """describe() is what a dry-run can print: it fails on what the node would reject."""
    import nemotron.backends.megatron as megatron
    from nemotron.errors import UserError

    _, cfg = load_config("nano3", "pretrain", "phase1", ["scheduler.decay_style=minus_sqrt"])
    with pytest.raises(UserError, match="lr_wsd_decay_style"):
        megatron.describe(cfg, "pretrain", "pretrain")
    _, cfg = load_config("super3", "model-quantize", "default")
    lines = megatron.describe(cfg, "model", "model-quantize")
    assert any("quantize.py" in line and "mamba_moe_nvfp4_conservative" in line
               for line in lines)


@pytest.mark.parametrize("family,stage,config", CONFIGS)
def test_every_cluster_config_describes_what_the_node_will_run(family, stage, config):
    import importlib

    st, cfg = load_config(family, stage, config)
    lines = importlib.import_module(f"nemotron.backends.{cfg.run.backend}").describe(
        cfg, st.entry, st.name)
    assert lines and all(isinstance(line, str) and line for line in lines)
