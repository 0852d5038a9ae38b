"""pipe: planned identities chain the stages, reruns skip, --force redoes, a failure stops it."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.cli_fixtures import REPO


@pytest.fixture
def chain_family(tmp_path, monkeypatch):
    """A family of three cheap data prep stages chained by a pipe."""
    root = tmp_path / "recipes"
    fam = root / "chain3"
    for stage, src in (("a", "prep-pretrain"), ("b", "prep-sft"), ("c", "prep-rl")):
        (fam / stage).mkdir(parents=True)
        shutil.copy(REPO / "recipes" / "nano3" / src / "tiny.yaml", fam / stage / "tiny.yaml")
    (fam / "family.yaml").write_text(textwrap.dedent("""\
        name: chain3
        description: three prep stages
        stages:
          a: {entry: prep, help: pre, outputs: {data: {kind: pretrain-data, name: a-data}}}
          b: {entry: prep, help: sft data, outputs: {data: {kind: sft-data, name: b-data}}}
          c: {entry: prep, help: rl data, outputs: {data: {kind: rl-data, name: c-data}}}
        pipe:
          tiny: [a, b, c]
        """))
    monkeypatch.setenv("NEMOTRON_RECIPES_DIR", str(root))
    from nemotron.recipes import _discover

    _discover.cache_clear()
    yield fam
    _discover.cache_clear()


def _records(home: Path):
    from nemotron.launch.records import list_records

    return {r.stage: r for r in list_records(home)}


def test_pipe_runs_skips_and_forces(cli, home, chain_family):
    first = cli("chain3", "pipe", "-c", "tiny", "c.data.generate.count=100")
    assert first.exit_code == 0, first.output
    assert first.stdout.count("succeeded") >= 3
    records = _records(home)
    assert {r.state for r in records.values()} == {"SUCCEEDED"}
    assert len({r.pipe for r in records.values()}) == 1

    again = cli("chain3", "pipe", "-c", "tiny", "c.data.generate.count=100")
    assert again.exit_code == 0, again.output
    assert again.stdout.count("skipped") >= 3 and "already exists" in again.stdout

    changed = cli("chain3", "pipe", "-c", "tiny", "c.data.generate.count=101")
    assert changed.exit_code == 0, changed.output
    assert "[1/3] a skipped" in changed.stdout and "[2/3] b skipped" in changed.stdout
    assert "c-data-tiny:v1" in changed.stdout  # only the stage whose config changed ran

    forced = cli("chain3", "pipe", "-c", "tiny", "--force", "--from", "b", "--to", "b")
    assert forced.exit_code == 0, forced.output
    # same config and inputs: the redone output keeps its identity (and version) but was rebuilt
    assert "registered chain3-b-data-tiny:v0" in forced.stdout
    assert "nothing to do" not in forced.stdout and "a-data" not in forced.stdout


def test_failing_middle_stage_stops_the_chain(cli, home, chain_family, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not a list"}\n{not json\n')
    res = cli("chain3", "pipe", "-c", "tiny",
              f"b.data.sources=[{{name: bad, path: {bad}, field: messages}}]")
    assert res.exit_code != 0, res.output
    records = _records(home)
    assert records["a"].state == "SUCCEEDED"
    assert records["b"].state == "FAILED" and records["b"].exit_code != 0
    assert records["c"].state == "CANCELLED" and "upstream b failed" in records["c"].reason
    assert "cancelled" in res.stdout and "failed" in res.stdout
    status = cli("jobs", "status", records["b"].id)
    assert status.exit_code == 1
    assert "FAILED" in status.stdout and "last lines of the log" in status.stdout


def test_pipe_dry_run_chains_planned_identities(cli, home, chain_family):
    res = cli("chain3", "pipe", "-c", "tiny", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "plan: chain3 a -c tiny" in res.stdout and "plan: chain3 c -c tiny" in res.stdout
    assert not home.exists()


def test_pipe_consumes_exactly_what_upstream_planned(home, tmp_path):
    """The sft stage of nano3's tiny chain reads the identity pretrain will produce."""
    from nemotron.launch.pipe import plan_pipe
    from nemotron.profiles import load_env
    from nemotron.recipes import get_family

    plans = plan_pipe(get_family("nano3"), config="tiny", overrides=[], env=load_env(),
                      profile_name=None, argv=["nemotron"], dry_run=True)
    by_stage = {p.stage.name: p for p in plans}
    assert list(by_stage) == ["prep-pretrain", "pretrain", "prep-sft", "sft", "prep-rl", "rl",
                              "rlhf", "prep-dpo", "dpo", "eval"]
    sft = by_stage["sft"]
    assert sft.inputs["model"].identity == by_stage["pretrain"].outputs["model"].identity
    assert sft.inputs["data"].identity == by_stage["prep-sft"].outputs["data"].identity
    for stage, upstream in (("rlhf", "rl"), ("dpo", "rlhf"), ("eval", "dpo")):
        assert by_stage[stage].inputs["model"].identity == \
            by_stage[upstream].outputs["model"].identity
    assert by_stage["dpo"].inputs["data"].identity == by_stage["prep-dpo"].outputs["data"].identity
    job = sft.job_document()
    assert job["inputs"]["model"]["identity"] == by_stage["pretrain"].outputs["model"].identity
    json.dumps(job)  # serialisable
