"""What a demanding user types: markup and emoji codes in values, booleans for numbers, numbers
out of range, broken YAML, typos. Every answer is exit 2 with a message that names the fix."""

from __future__ import annotations

import pytest

PRETRAIN = ("nano3", "pretrain", "-c", "tiny")


@pytest.mark.parametrize("text", ["a:b:c", "[red]x[/red]", "x:smile:y", ":smile:[bold]"])
def test_user_text_is_printed_verbatim(cli, text):
    failed = cli(*PRETRAIN, f"run.data={text}")
    assert failed.exit_code == 2
    assert text.split(":")[0] in failed.stderr or text in failed.stderr, failed.stderr
    assert "\N{NEGATIVE SQUARED LATIN CAPITAL LETTER B}" not in failed.output
    assert "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" not in failed.output
    dry = cli(*PRETRAIN, "-d", f"run.data=./{text}")
    assert dry.exit_code == 0 and f"./{text}" in dry.stdout, dry.output
    profile = cli(*PRETRAIN, "-d", "--run", text)
    assert profile.exit_code == 2 and f"unknown profile '{text}'" in profile.stderr


def test_an_artifact_reference_with_colons_is_echoed_as_typed(cli, home):
    from nemotron.lineage import Store

    Store.open(home / "artifacts" / "lineage.db").close()  # references now go to the store
    for text in ("a:b:c", "nano3-x:[red]v1[/red]"):
        failed = cli(*PRETRAIN, f"run.data={text}")
        assert failed.exit_code == 2 and text in failed.stderr, failed.stderr
    mapping = cli(*PRETRAIN, "run.data=x:smile:")  # YAML: a trailing ':' makes a mapping
    assert mapping.exit_code == 2 and "{'x:smile': None}" in mapping.stderr, mapping.stderr
    assert "quote it" in mapping.stderr


@pytest.mark.parametrize("override,message", [
    ("train.train_iters=true", "train_iters=true is a boolean; give a number"),
    ("run.seed=false", "seed=false is a boolean; give a number"),
    ("train.train_iters=" + "9" * 5000, "the number is out of range"),
    ("train.train_iters=" + "9" * 30, "the number is out of range"),
    ("optimizer.lr=1e999", "the number is out of range"),
    ("train.eval_iters=[1, 2", "the value is not YAML"),
    ("run.data=@here", "the value is not YAML"),
    ("train.ключ=5", "unknown key 'train.ключ'"),
])
def test_strict_values_are_user_errors(cli, override, message):
    res = cli(*PRETRAIN, "-d", "run.data=/tmp", override)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output, res.stderr
    assert len(res.stderr) < 800  # 5000 digits are not echoed back


def test_a_boolean_for_a_profile_number_is_refused(cli, env_toml):
    env = env_toml('[p]\nnodes = true\n')
    res = cli("profiles", "show", "p", "--env-file", str(env))
    assert res.exit_code == 2 and "nodes=true is a boolean" in res.stderr


def test_deleting_a_section_the_stage_needs_fails_before_a_job_exists(cli, home):
    dry = cli(*PRETRAIN, "-d", "run.data=/tmp", "~model")
    assert dry.exit_code == 2 and "needs the config sections model" in dry.stderr
    real = cli(*PRETRAIN, "run.data=/tmp", "~model")
    assert real.exit_code == 2
    assert not (home / "jobs").exists() or not list((home / "jobs").iterdir())


def test_hints_name_the_real_fix(cli, env_toml, tmp_path):
    ref = cli(*PRETRAIN, "run.data=nano3-pretrain-data-tiny@zzzz")
    assert ref.exit_code == 2
    assert "data prep pretrain -c tiny`" in ref.stderr and "-c tiny@zzzz" not in ref.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("data:\n  kind: pretrain\n")
    prep = cli("nano3", "data", "prep", "pretrain", "-c", str(empty))
    assert prep.exit_code == 2 and "e.g. data.tokenizer.path=" in prep.stderr, prep.stderr
    typo = cli("profiles", "list", "--env-file", str(env_toml('[wandb]\nprojcet = "x"\n')))
    assert typo.exit_code == 2 and "unknown key 'projcet'" in typo.stderr
    assert "did you mean 'project'" in typo.stderr


def test_an_rl_source_without_the_prompt_field_hints_at_prompt_field(cli, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "no prompt here"}\n' * 3)
    res = cli("nano3", "data", "prep", "rl", "-c", "tiny",
              f"data.sources=[{{name: mine, path: {rows}}}]")
    assert res.exit_code == 2, res.output
    assert "data.prompt_field" in res.output
