"""Local GRPO with TRL: the exact-match reward, and steps that log the mean reward."""

from __future__ import annotations

from conftest import TINY_ARCH, make_job


def test_exact_match_reward_reads_the_final_answer():
    from nemotron.backends.local.grpo import exact_match_reward

    completions = [
        "<think>7 and 5 make 12</think>The answer is \\boxed{12}.",
        [{"role": "assistant", "content": "I think \\boxed{11}"}],
        "12",
        "12.\n",
        "The sum is twelve",
        "\\boxed{ 1,2 }",
    ]
    assert exact_match_reward(completions, ["12"] * 6) == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def test_grpo_runs_steps_and_logs_the_mean_reward(tmp_path, rl_data, base_model):
    from transformers import AutoModelForCausalLM

    from nemotron.backends.local import rl
    from nemotron.backends.local.metrics import read_metrics

    config = {
        "run": {"backend": "local", "seed": 3},
        "model": dict(TINY_ARCH),
        "optimizer": {"lr": 1e-4, "min_lr": 1e-4, "weight_decay": 0.0},
        "scheduler": {"style": "constant"},
        "grpo": {"num_prompts_per_step": 2, "num_generations_per_prompt": 2,
                 "max_num_steps": 3, "max_total_sequence_length": 96, "max_new_tokens": 8},
    }
    job, cfg, work, final = make_job(tmp_path, "rl", config,
                                     {"data": ("rl-data", rl_data), "model": ("model", base_model)})
    meta = rl(job, cfg, work, final)
    assert meta["stage"] == "rl" and meta["step"] == 3
    records = [r for r in read_metrics(work) if r["split"] == "train"]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(0.0 <= r["reward"] <= 1.0 for r in records)
    assert len(meta["extra"]["rewards"]) == 3
    assert not (work / "checkpoints").exists()
    AutoModelForCausalLM.from_pretrained(str(work))  # a plain HF checkpoint again
