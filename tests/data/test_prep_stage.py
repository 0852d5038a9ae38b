"""The prep stage entry: job.yaml -> prep -> lineage record, through the real harness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prep_corpus import TINY_TOKENIZER

from nemotron.lineage import Store, validate_metadata
from nemotron.stages import prep
from nemotron.stages.harness import execute
from nemotron.stages.job import Job

TINY = Path(__file__).resolve().parents[2] / "configs" / "datasets" / "tiny"


def make_job(tmp_path: Path, stage: str, kind: str, data: dict) -> Job:
    out = tmp_path / "artifacts" / f"nano3-{stage}-data-tiny" / "0123456789abcdef"
    return Job.model_validate(
        {
            "job": {
                "id": f"nano3-{stage}-tiny-1",
                "family": "nano3",
                "stage": stage,
                "entry": "prep",
                "config_name": "tiny",
                "dir": str(tmp_path / "job"),
            },
            "config": {"data": data},
            "outputs": {
                "data": {
                    "kind": kind,
                    "name": f"nano3-{stage}-data-tiny",
                    "identity": "0123456789abcdef" * 4,
                    "path": str(out),
                }
            },
            "lineage": {"db": str(tmp_path / "lineage.db"), "root": str(tmp_path / "artifacts")},
        }
    )


CASES = {
    "prep-pretrain": (
        "pretrain-data",
        {
            "sources": [
                {
                    "name": "stories",
                    "path": str(TINY / "pretrain" / "stories.jsonl"),
                    "sample": 300,
                },
                {"name": "math", "path": str(TINY / "pretrain" / "math.jsonl.gz"), "sample": 300},
            ],
            "tokenizer": {"path": str(TINY_TOKENIZER)},
            "num_workers": 1,
        },
    ),
    "prep-sft": (
        "sft-data",
        {
            "sources": [{"name": "chat", "path": str(TINY / "sft" / "chat.jsonl"), "sample": 200}],
            "tokenizer": {"path": str(TINY_TOKENIZER)},
            "pack_size": 512,
            "num_workers": 1,
        },
    ),
    "prep-rl": ("rl-data", {"generate": {"count": 200}, "num_workers": 1}),
}


@pytest.mark.parametrize("stage", sorted(CASES))
def test_stage_registers_a_valid_artifact(tmp_path, monkeypatch, stage):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    kind, data = CASES[stage]
    job = make_job(tmp_path, stage, kind, data)
    assert execute(job, prep.run) == 0
    (out,) = job.outputs.values()
    final = Path(out.path)
    assert final.is_dir() and not final.with_name(final.name + ".partial").exists()
    with Store.open(tmp_path / "lineage.db") as store:
        art = store.find(out.name, identity=out.identity)
    assert art is not None and art.version == "v0"
    assert validate_metadata(kind, art.metadata) == art.metadata
    json.dumps(art.metadata)
    if kind == "pretrain-data":  # blend prefixes point at the final (renamed) folder
        blend = json.loads((final / "blend.json").read_text())
        assert all(p.startswith(str(final) + "/") for p in blend["train"][1::2])
        assert all((final / (p + ".idx")).is_file() for p in art.metadata["prefixes"]["train"])


def test_kind_comes_from_the_output_kind(tmp_path):
    from nemotron.config.prep import RlPrepConfig, SftPrepConfig
    from nemotron.errors import UserError

    data = {"tokenizer": {"path": "t"}, "sources": [{"name": "a", "path": "a.jsonl"}]}
    job = make_job(tmp_path, "tokenize", "sft-data", data)  # any stage name
    assert isinstance(job.stage_config().data, SftPrepConfig)
    job = make_job(tmp_path, "prep-x", "rl-data", {"generate": {"count": 3}})
    assert isinstance(job.stage_config().data, RlPrepConfig)
    with pytest.raises(UserError, match="data.kind"):  # a kind that contradicts the output
        make_job(tmp_path, "prep-sft", "sft-data", {**data, "kind": "rl"}).stage_config()


def test_invalid_data_config_is_a_user_error(tmp_path):
    from nemotron.errors import UserError

    job = make_job(tmp_path, "prep-pretrain", "pretrain-data", {"sources": []})
    with pytest.raises(UserError, match="'data.tokenizer' is required"):
        prep.run(job, tmp_path / "w", tmp_path / "f")


def test_tiny_data_is_usable_for_every_kind():
    """The shipped tiny corpus feeds all three preps without a bad row."""
    from nemotron.config.prep import SourceSpec
    from nemotron.data.sources import BadRows, RowReader, plan_units

    for name, field, kind in (
        ("pretrain/stories.jsonl", "text", "str"),
        ("pretrain/math.jsonl.gz", "text", "str"),
        ("sft/chat.jsonl", "messages", "list"),
        ("rl/problems.jsonl", "question", "str"),
    ):
        bad = BadRows(name, strict=True)
        (unit,) = plan_units([SourceSpec(name="x", path=str(TINY / name))], 2**30)
        rows = sum(1 for _ in RowReader(unit, field, kind, bad).rows())
        assert rows >= 200 and bad.count == 0
