"""Secrets never reach dry-run output, job.yaml or logs; they travel in an owner-only file."""

import stat

import pytest
import yaml

from nemotron.launch.jobdir import write_job_folder
from nemotron.launch.plan import build_plan
from nemotron.profiles import load_env
from nemotron.recipes import get_family

SECRET = "s3cr3t-planted-9f2c"
ENV = f"""
[wandb]
project = "nemotron-test"
mode = "offline"
api_key = "{SECRET}-wandb"

[base]
executor = "local"
[base.env_vars]
MY_API_KEY = "{SECRET}"
HF_TOKEN = "{SECRET}-hf"
PLAIN = "visible-value"
MY_PASSWORD_X = "{SECRET}-mid"
api_key_lower = "{SECRET}-lower"

[child]
extends = "base"
env_vars = {{ OTHER = "x" }}

[cluster]
extends = "base"
executor = "slurm"
account = "acct"
partition = "batch"
"""


def test_dry_run_and_profile_show_redact(cli, env_toml, monkeypatch):
    env = env_toml(ENV)
    monkeypatch.setenv("WANDB_API_KEY", f"{SECRET}-shell")
    res = cli("nano3", "pretrain", "-c", "tiny", "-d", "--env-file", str(env), "--run", "child",
              "run.data=/tmp")
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    assert "MY_API_KEY=********" in res.stdout
    assert "MY_PASSWORD_X=********" in res.stdout and "api_key_lower=********" in res.stdout
    shown = cli("profiles", "show", "child", "--env-file", str(env))
    assert shown.exit_code == 0, shown.output
    assert SECRET not in shown.output and "visible-value" in shown.stdout
    assert "OTHER" in shown.stdout  # extends merged env_vars
    assert "MY_PASSWORD_X" in shown.stdout and "api_key_lower" in shown.stdout


def test_sbatch_dry_run_leaves_secrets_out(cli, env_toml, tmp_path):
    env = env_toml(ENV)
    res = cli("nano3", "pretrain", "-c", "tiny", "-d", "--env-file", str(env), "--run",
              "cluster", f"run.data={tmp_path}")
    assert res.exit_code == 0, res.output
    assert "#SBATCH" in res.stdout, res.stdout
    assert "export PLAIN=" in res.stdout
    assert SECRET not in res.output
    assert "export MY_PASSWORD_X" not in res.stdout and "export api_key_lower" not in res.stdout


def test_job_folder_keeps_secrets_out_of_job_yaml(home, env_toml, tmp_path):
    env = load_env(str(env_toml(ENV)))
    family = get_family("nano3")
    data = tmp_path / "blend"
    data.mkdir()
    plan = build_plan(family, family.stage("pretrain"), config="tiny",
                      overrides=[f"run.data={data}"], env=env, profile_name="child",
                      argv=["nemotron", "nano3", "pretrain", f"logging.api_token={SECRET}"])
    job_dir = write_job_folder(plan)
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((job_dir / "job.yaml").stat().st_mode) == 0o600
    text = (job_dir / "job.yaml").read_text()
    assert SECRET not in text
    job = yaml.safe_load(text)
    assert job["inputs"]["data"]["path"] == str(data)
    assert job["job"]["argv"][-1] == "logging.api_token=********"
    assert job["lineage"]["wandb"]["project"] == "nemotron-test"
    assert "api_key" not in job["lineage"]["wandb"]
    secrets_file = job_dir / "secrets.env"
    assert job["secrets_file"] == str(secrets_file)
    mode = stat.S_IMODE(secrets_file.stat().st_mode)
    assert mode == 0o600
    body = secrets_file.read_text()
    assert f"MY_API_KEY={SECRET}" in body and f"HF_TOKEN={SECRET}-hf" in body
    assert f"WANDB_API_KEY={SECRET}-wandb" in body
    assert f"MY_PASSWORD_X={SECRET}-mid" in body and f"api_key_lower={SECRET}-lower" in body
    assert "PLAIN" not in body  # not a secret: it is in the process environment instead
    assert plan.process_env()["PLAIN"] == "visible-value"
    assert not {"MY_PASSWORD_X", "api_key_lower", "MY_API_KEY"} & set(plan.process_env())


def test_profile_inheritance_and_cycles(env_toml):


    from nemotron.errors import UserError

    env = load_env(str(env_toml(
        '[a]\nexecutor = "slurm"\npartition = "p1"\nnodes = 4\ngpus_per_node = 8\n'
        '[b]\nextends = "a"\nnodes = 1\n[c]\nextends = "b"\npartition = "p3"\n')))
    c = env.profile("c")
    assert (c.executor, c.partition, c.nodes, c.gpus_per_node) == ("slurm", "p3", 1, 8)
    assert "local" in env.profiles
    with pytest.raises(UserError, match="cycle"):
        load_env(str(env_toml('[a]\nextends = "b"\n[b]\nextends = "a"\n', "cyc.toml")))
    with pytest.raises(UserError, match="unknown profile 'nope'"):
        load_env(str(env_toml('[a]\nextends = "nope"\n', "bad.toml")))


def test_env_toml_found_upwards(tmp_path, monkeypatch):
    (tmp_path / "env.toml").write_text('[up]\nexecutor = "local"\n')
    deep = tmp_path / "x" / "y"
    deep.mkdir(parents=True)
    monkeypatch.delenv("NEMOTRON_ENV_FILE", raising=False)
    monkeypatch.chdir(deep)
    assert "up" in load_env().profiles
    monkeypatch.setenv("NEMOTRON_ENV_FILE", str(tmp_path / "env.toml"))
    assert load_env().path == tmp_path / "env.toml"


def test_example_env_toml_is_valid():
    from tests.cli_fixtures import REPO

    env = load_env(str(REPO / "env.toml.example"))
    assert {"my-cluster", "my-cluster-ssh", "local-slurm", "docker-gpu"} <= set(env.profiles)
    assert env.profile("my-cluster-ssh").tunnel == "ssh"
    assert env.profile("my-cluster-ssh").partition == "batch"


@pytest.mark.parametrize("name,secret", [
    ("HF_TOKEN", True), ("WANDB_API_KEY", True), ("api_key", True), ("MY_SECRET", True),
    ("db_password", True), ("APIKEY", True), ("token", True), ("AWS_CREDENTIALS", True),
    ("MY_PASSWORD_X", True), ("api_key_lower", True), ("db-Passwd-2", True),
    ("Key_File", True), ("deployment.api_key", True), ("PGPASSWORD", True),
    ("max_new_tokens", False), ("token_level_loss", False), ("tokenizer", False),
    ("num_tokens", False), ("monkey", False), ("eod_token", False), ("keyboard", False),
])
def test_secret_names(name, secret):
    from nemotron.profiles import redact

    assert (redact({name: "v"})[name] != "v") is secret
    assert redact({name: True})[name] is True  # a flag is not a secret


def test_rl_and_eval_configs_survive_into_job_yaml(home):
    from nemotron.stages.job import Job

    env = load_env()
    family = get_family("nano3")
    for stage in ("rl", "eval"):
        inputs = ["run.model=/tmp"] + (["run.data=/tmp"] if stage == "rl" else [])
        plan = build_plan(family, family.stage(stage), config="tiny", overrides=inputs,
                          env=env, profile_name=None, argv=["nemotron"])
        job = Job.model_validate(plan.job_document())
        assert "********" not in yaml.safe_dump(job.config)
        job.stage_config()  # decodes on the node
