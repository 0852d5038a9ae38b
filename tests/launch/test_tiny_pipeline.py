"""The newcomer's main job, shortened: `nemotron nano3 pipe -c tiny` through all ten stages
(real data prep, real training, GRPO, Stage 2's rl -> rlhf -> dpo and lm-eval, a few steps
each) on CPU; the same seed gives the same weights and eval numbers, another seed other
weights."""

import json

from nemotron.lineage import Store
from tests.cli_fixtures import weights_digest

STAGE_SHORT = {"pretrain": [
    "train.train_iters=24", "scheduler.warmup_iters=4", "scheduler.decay_iters=8",
    "train.eval_interval=12", "checkpoint.save_interval=12"]}
SHORT = [
    *(f"pretrain.{o}" for o in STAGE_SHORT["pretrain"]),
    "sft.train.train_iters=6", "sft.scheduler.warmup_iters=2", "sft.train.eval_interval=6",
    "sft.checkpoint.save_interval=6",
    "rl.grpo.max_num_steps=2", "rlhf.grpo.max_num_steps=1", "dpo.dpo.max_num_steps=6",
    "eval.eval.tasks=[{name: tiny_arithmetic, path: configs/eval/tiny_arithmetic.yaml, limit: 8},"
    " {name: tiny_chat_choice, path: configs/eval/tiny_chat_choice.yaml, limit: 8},"
    " {name: tiny_tool_preference, path: configs/eval/tiny_tool_preference.yaml, limit: 8}]",
]
CHAIN = [("prep-pretrain", "nano3-pretrain-data-tiny"), ("pretrain", "nano3-pretrain-model-tiny"),
         ("prep-sft", "nano3-sft-data-tiny"), ("sft", "nano3-sft-model-tiny"),
         ("prep-rl", "nano3-rl-data-tiny"), ("rl", "nano3-rl-model-tiny"),
         ("rlhf", "nano3-rlhf-model-tiny"), ("prep-dpo", "nano3-dpo-data-tiny"),
         ("dpo", "nano3-dpo-model-tiny"), ("eval", "nano3-eval-results-tiny")]


def test_tiny_pipe_end_to_end(cli, home):
    res = cli("nano3", "pipe", "-c", "tiny", *SHORT)
    assert res.exit_code == 0, res.output[-4000:]
    for stage, _ in CHAIN:
        assert f"{stage}" in res.stdout
    assert "lineage" in res.stdout and "evaluation" in res.stdout

    store = Store.open(home / "artifacts" / "lineage.db")
    arts = {name: store.resolve(name) for _, name in CHAIN}
    assert all(a.version == "v0" for a in arts.values())
    # the lineage links every stage: eval <- rl <- (rl data, sft <- (sft data, pretrain <- data))
    graph = json.loads(cli("artifacts", "lineage", "nano3-eval-results-tiny", "--format",
                           "json").stdout)
    text = json.dumps(graph)
    for _, name in CHAIN:
        assert name in text, name
    pretrain = arts["nano3-pretrain-model-tiny"].metadata
    assert pretrain["metrics"]["loss"] < pretrain["metrics"]["initial_loss"] - 2.0
    results = arts["nano3-eval-results-tiny"].metadata["results"]
    assert {"tiny_arithmetic", "tiny_chat_choice", "tiny_tool_preference"} <= set(results)
    # Stage 2: each stage consumes the model the previous one made in this pipe
    made_from = {name: {i.role: i.ref for i in art.inputs} for name, art in arts.items()}
    assert made_from["nano3-rlhf-model-tiny"] == {"data": "nano3-rl-data-tiny:v0",
                                                  "model": "nano3-rl-model-tiny:v0"}
    assert made_from["nano3-dpo-model-tiny"] == {"data": "nano3-dpo-data-tiny:v0",
                                                 "model": "nano3-rlhf-model-tiny:v0"}
    assert made_from["nano3-eval-results-tiny"]["model"] == "nano3-dpo-model-tiny:v0"
    dpo = arts["nano3-dpo-model-tiny"].metadata["metrics"]
    assert dpo["margin"] > dpo["initial_margin"], dpo  # on the held-out pairs

    again = cli("nano3", "pipe", "-c", "tiny", *SHORT)  # everything exists: all skipped
    assert again.exit_code == 0, again.output[-2000:]
    assert again.stdout.count("skipped") >= len(CHAIN)
    assert "falling back to its reference PyTorch" not in res.output  # known notes stay quiet

    # a second fresh home, same seed: the same weights at every stage, the same eval numbers
    other = home.parent / "home-2"
    twin = cli("nano3", "pipe", "-c", "tiny", *SHORT, env={"NEMOTRON_HOME": str(other)})
    assert twin.exit_code == 0, twin.output[-4000:]
    with Store.open(other / "artifacts" / "lineage.db") as store2:
        twins = {name: store2.resolve(name) for _, name in CHAIN}
    for name in ("nano3-pretrain-model-tiny", "nano3-sft-model-tiny", "nano3-rl-model-tiny"):
        assert weights_digest(arts[name].path) == weights_digest(twins[name].path), name
    assert twins["nano3-eval-results-tiny"].metadata["models"] == arts[
        "nano3-eval-results-tiny"].metadata["models"]
    # another seed: other weights
    reseeded = cli("nano3", "pretrain", "-c", "tiny", "run.seed=7", *STAGE_SHORT["pretrain"],
                   env={"NEMOTRON_HOME": str(other)})
    assert reseeded.exit_code == 0, reseeded.output[-4000:]
    with Store.open(other / "artifacts" / "lineage.db") as store2:
        changed = store2.resolve("nano3-pretrain-model-tiny:latest")
    assert changed.version == "v1"
    assert weights_digest(changed.path) != weights_digest(arts["nano3-pretrain-model-tiny"].path)


