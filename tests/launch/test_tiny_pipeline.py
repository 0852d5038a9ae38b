"""The newcomer's main job, shortened: `nemotron nano3 pipe -c tiny` through all seven stages
(real data prep, real training, GRPO and lm-eval, a few steps each) on CPU."""

import json

from nemotron.lineage import Store

SHORT = [
    "pretrain.train.train_iters=24", "pretrain.scheduler.warmup_iters=4",
    "pretrain.scheduler.decay_iters=8", "pretrain.train.eval_interval=12",
    "pretrain.checkpoint.save_interval=12",
    "sft.train.train_iters=6", "sft.scheduler.warmup_iters=2", "sft.train.eval_interval=6",
    "sft.checkpoint.save_interval=6",
    "rl.grpo.max_num_steps=2",
    "eval.eval.tasks=[{name: tiny_arithmetic, path: configs/eval/tiny_arithmetic.yaml, limit: 8},"
    " {name: tiny_chat_choice, path: configs/eval/tiny_chat_choice.yaml, limit: 8}]",
]
CHAIN = [("prep-pretrain", "nano3-pretrain-data-tiny"), ("pretrain", "nano3-pretrain-model-tiny"),
         ("prep-sft", "nano3-sft-data-tiny"), ("sft", "nano3-sft-model-tiny"),
         ("prep-rl", "nano3-rl-data-tiny"), ("rl", "nano3-rl-model-tiny"),
         ("eval", "nano3-eval-results-tiny")]


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
    assert {"tiny_arithmetic", "tiny_chat_choice"} <= set(results)

    again = cli("nano3", "pipe", "-c", "tiny", *SHORT)  # everything exists: all skipped
    assert again.exit_code == 0, again.output[-2000:]
    assert again.stdout.count("skipped") >= len(CHAIN)
