"""Shell completion through the real entry point, in-process, as bash and zsh ask for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from nemotron.cli.completion import COMPLETE_VAR


@pytest.fixture
def complete(cli):
    def bash(line: str, env: dict[str, str] | None = None) -> list[str]:
        words = line.split(" ")
        res = cli(env={COMPLETE_VAR: "complete_bash", "COMP_WORDS": line,
                       "COMP_CWORD": str(len(words) - 1), **(env or {})})
        assert res.exit_code == 0, res.output
        return res.stdout.split()

    return bash


def test_families_stages_and_groups(complete):
    assert {"nano3", "super3"} <= set(complete("nemotron "))
    assert complete("nemotron nano3 ") == ["pretrain", "sft", "rl", "rlhf", "dpo", "eval",
                                            "pipe", "data", "model"]
    assert complete("nemotron nano3 data prep ") == ["pretrain", "sft", "rl", "dpo"]
    assert "quantize" in complete("nemotron super3 model ")


def test_config_names_for_dash_c(complete):
    from nemotron.recipes import get_family

    assert complete("nemotron nano3 pretrain -c ") == \
        get_family("nano3").stage("pretrain").configs()
    assert complete("nemotron nano3 sft --config t") == ["tiny"]
    assert complete("nemotron nano3 pipe -c ") == ["default", "tiny"]


def test_zsh_completion_carries_the_config_header(cli):
    res = cli(env={COMPLETE_VAR: "complete_zsh",
                   "_TYPER_COMPLETE_ARGS": "nemotron nano3 pretrain -c ti"})
    assert '"tiny":"Tiny Nemotron 3 Nano pretraining' in res.stdout


def test_profile_names_for_run_and_batch(complete, env_toml, monkeypatch):
    assert complete("nemotron nano3 sft --run ") == ["local"]
    path = env_toml('[gpu-a]\nexecutor = "slurm"\naccount = "a"\n[gpu-b]\nexecutor = "local"\n')
    monkeypatch.setenv("NEMOTRON_ENV_FILE", str(path))
    assert complete("nemotron nano3 sft --batch gpu") == ["gpu-a", "gpu-b"]
    assert complete("nemotron nano3 sft -r ") == ["gpu-a", "gpu-b", "local"]


def test_run_keys_and_artifact_names(cli, complete):
    keys = complete("nemotron nano3 sft run.")
    assert keys[:2] == ["run.data=", "run.model="]
    assert {"run.env.nodes=", "run.env.nproc_per_node=", "run.env.mounts="} <= set(keys)
    assert complete("nemotron nano3 pretrain run.model=") == []  # no artifacts yet
    assert cli("nano3", "data", "prep", "rl", "-c", "tiny").exit_code == 0
    assert complete("nemotron nano3 rl run.data=") == [
        "run.data=nano3-rl-data-tiny", "run.data=nano3-rl-data-tiny:v0",
        "run.data=nano3-rl-data-tiny:latest"]
    assert complete("nemotron nano3 sft run.data=") == []  # only the kind the slot takes
    # bash splits the word at '=' (COMP_WORDBREAKS): complete the value alone
    assert complete("nemotron nano3 rl run.data = nano3") == [
        "nano3-rl-data-tiny", "nano3-rl-data-tiny:v0", "nano3-rl-data-tiny:latest"]


def test_job_ids_for_jobs_commands(cli, complete, home):
    from nemotron.launch.records import list_records

    assert cli("nano3", "data", "prep", "rl", "-c", "tiny", "--stage").exit_code == 0
    (staged,) = list_records(home)
    for command in ("status", "logs", "cancel", "submit"):
        assert complete(f"nemotron jobs {command} nano3-prep") == [staged.id], command
    assert complete("nemotron jobs status other") == []


def test_completion_imports_neither_torch_nor_nemo_run(tmp_path):
    probe = (
        "import os, sys\n"
        "from nemotron.cli.main import main\n"
        "try:\n    main([])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'nemo_run', 'transformers') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    env = dict(os.environ, NEMOTRON_HOME=str(tmp_path), _NEMOTRON_COMPLETE="complete_bash",
               COMP_WORDS="nemotron nano3 sft run.data=", COMP_CWORD="3")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert "HEAVY=" in done.stderr and done.stderr.rsplit("HEAVY=", 1)[1] == "", done.stderr
    assert done.stdout.split() == []  # nothing registered in this home


def test_show_completion_prints_the_script_for_the_shell(cli):
    res = cli("--show-completion")  # for the shell it runs under
    assert res.exit_code == 0, res.output
    assert re.search(r"_NEMOTRON_COMPLETE=complete_(bash|zsh|fish)", res.stdout)
    assert "--install-completion" in cli("--help").stdout
