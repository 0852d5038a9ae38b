"""Each stage of the tiny recipe does its job: on the held-out arithmetic (facts no SFT chat or
GRPO prompt contains) the base model scores below the SFT model, and the SFT model below the
GRPO model. The recipe's own pretrain, SFT and GRPO steps (the margins need them); the pipe
stops after rl and one eval call scores the three models side by side on that task alone, so
this is the tiny pipe without rlhf, dpo and the other eval tasks."""

from nemotron.lineage import Store

ARITHMETIC = "eval.tasks=[{name: tiny_arithmetic, path: configs/eval/tiny_arithmetic.yaml}]"


def test_base_below_sft_below_rl_on_held_out_arithmetic(cli, home):
    res = cli("nano3", "pipe", "-c", "tiny", "--to", "rl")
    assert res.exit_code == 0, res.output[-4000:]
    scored = cli("nano3", "eval", "-c", "tiny", "run.model=nano3-rl-model-tiny",
                 "run.inputs.sft=nano3-sft-model-tiny",
                 "run.inputs.base=nano3-pretrain-model-tiny", ARITHMETIC)
    assert scored.exit_code == 0, scored.output[-4000:]
    with Store.open(home / "artifacts" / "lineage.db") as store:
        models = store.resolve("nano3-eval-results-tiny").metadata["models"]
        rewards = store.resolve("nano3-rl-model-tiny").metadata["extra"]["rewards"]
    exact = {label: models[label]["tiny_arithmetic"]["exact_match"]
             for label in ("pretrain", "sft", "rl")}
    assert exact["pretrain"] < exact["sft"] < exact["rl"], exact
    assert sum(rewards[-3:]) > sum(rewards[:3]), rewards  # GRPO raised its own reward
