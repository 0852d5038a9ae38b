"""Local GRPO: TRL's ``GRPOTrainer`` on our RL JSONL with a rule-based exact-match reward.

Each JSONL record carries the chat prompt in ``responses_create_params.input`` and the answer
in ``expected_answer`` (NeMo-Gym format). The reward is 1 when the completion's final answer
(the last ``\\boxed{...}``, else the last line, after any ``</think>``) equals the expected
answer after normalisation, else 0. ``cfg.grpo`` maps onto ``GRPOConfig``: prompts x
generations per step, steps, clip ratios (``epsilon`` / ``epsilon_high``), KL coefficient
(``beta``), token-level loss (``dapo``), temperature, new tokens. The mean reward of every
step goes to ``metrics.jsonl``. The aux-loss-free expert-bias update runs after every step
(``ExpertBalancer`` from a trainer callback). TRL checkpoints every
``checkpoint.save_interval`` steps into the work folder; a rerun resumes from the newest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


# ---------------------------------------------------------------------------- reward
def normalize(answer: str) -> str:
    text = str(answer).strip().strip("$").strip()
    text = text.rstrip(".").replace(",", "").replace(" ", "")
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return text.lower()


def final_answer(completion: str) -> str:
    text = completion.split("</think>")[-1]
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    return str(completion)


def exact_match_reward(completions, expected_answer, **_: Any) -> list[float]:
    """1.0 where the completion's final answer equals the expected answer, else 0.0."""
    return [
        1.0 if normalize(final_answer(completion_text(c))) == normalize(expected) else 0.0
        for c, expected in zip(completions, expected_answer, strict=True)
    ]


# ---------------------------------------------------------------------------- data
def rl_file(data_dir: Path, metadata: dict[str, Any], split: str) -> Path | None:
    names = metadata.get("splits") or {}
    candidates = []
    if isinstance(names.get(split), str):
        candidates.append(data_dir / names[split])
    aliases = {"valid": ("valid", "val", "validation"), "train": ("train",), "test": ("test",)}
    for alias in aliases.get(split, (split,)):
        candidates += [data_dir / f"{alias}.jsonl", data_dir / alias / f"{alias}.jsonl"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Records -> {"prompt": messages, "expected_answer": str}; records without either are
    rejected with the line number."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}:{number} is not JSON: {exc}") from None
        params = row.get("responses_create_params") or {}
        messages = params.get("input")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not messages or "expected_answer" not in row:
            raise UserError(
                f"{path}:{number} lacks responses_create_params.input or expected_answer",
                hint="the local exact-match reward needs both (data prep rl writes them)",
            )
        prompt = [{"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
                  for m in messages if isinstance(m, dict)]
        records.append({"prompt": prompt, "expected_answer": str(row["expected_answer"])})
    return records


# ---------------------------------------------------------------------------- run
def run(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from nemotron.backends.local import modeling
    from nemotron.backends.local.balancing import ExpertBalancer, routers
    from nemotron.backends.local.inputs import (
        input_metadata,
        input_path,
        input_ref,
        tokenizer_dir_of,
    )
    from nemotron.backends.local.metrics import MetricsLog
    from nemotron.backends.local.trl_args import fit, save_policy, training_args

    grpo = cfg.grpo
    if grpo is None or cfg.optimizer is None:
        raise UserError("the rl stage needs the grpo and optimizer sections",
                        hint="start from -c tiny")
    if grpo.reward != "exact_match":
        raise UserError(f"the local backend computes the exact_match reward only, not "
                        f"{grpo.reward}", hint="grpo.reward=exact_match, or run.backend=nemo_rl")
    device = modeling.setup_torch(cfg.run.env.cpus_per_task)
    data_dir = input_path(job, "data", "an rl-data artifact (JSONL)")
    model_dir = modeling.check_model_folder(input_path(job, "model", "a model to train"))
    meta = input_metadata(job, "data")
    train_file = rl_file(data_dir, meta, "train")
    if train_file is None:
        raise UserError(f"no train JSONL in {data_dir}",
                        hint="run.data must be an rl-data artifact (data prep rl)")
    tok_dir = tokenizer_dir_of(model_dir) or tokenizer_dir_of(data_dir, meta)
    if tok_dir is None:
        raise UserError(f"the model {model_dir} carries no tokenizer",
                        hint="use a model made by the local pretrain/sft stages")
    tokenizer = modeling.load_tokenizer(tok_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the model's tokenizer has no chat template; GRPO prompts are chats",
                        hint="fine-tune with sft first (it ships the data's chat template)")
    records = _fitting(read_prompts(train_file), tokenizer, grpo)

    model = modeling.load_causal_lm(model_dir)
    model.config.use_cache = True
    completions_per_step = grpo.num_prompts_per_step * grpo.num_generations_per_prompt
    args = GRPOConfig(
        **training_args(cfg, device, work_dir),
        per_device_train_batch_size=completions_per_step,
        gradient_accumulation_steps=1,
        num_generations=grpo.num_generations_per_prompt,
        max_steps=grpo.max_num_steps,
        max_completion_length=grpo.max_new_tokens,
        temperature=grpo.temperature,
        beta=grpo.kl_coeff,
        epsilon=grpo.ratio_clip_min,
        epsilon_high=grpo.ratio_clip_max,
        loss_type="dapo" if grpo.token_level_loss else "grpo",
        bf16=device.type == "cuda" and cfg.train is not None and cfg.train.precision == "bf16",
        log_completions=False,
        shuffle_dataset=True,
        chat_template_kwargs={},
    )
    metrics = MetricsLog(work_dir, "rl")
    balancer = None
    if cfg.model is not None and cfg.model.moe_router_enable_expert_bias and \
            cfg.moe.expert_bias_update and routers(model):
        balancer = ExpertBalancer(model, rate=cfg.model.moe_router_bias_update_rate)

    class _Log(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if balancer is not None:
                balancer.update()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if "reward" not in logs:
                return
            metrics.write(
                state.global_step, "train", of=args.max_steps,
                reward=logs.get("reward"), reward_std=logs.get("reward_std"),
                loss=logs.get("loss"), lr=logs.get("learning_rate"),
                completion_length=logs.get("completions/mean_length"),
                grad_norm=logs.get("grad_norm"), kl=logs.get("kl"),
            )

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[exact_match_reward],
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        callbacks=[_Log()],
    )
    model = fit(trainer, work_dir, metrics, "rl",
                f"[rl] GRPO on {len(records)} prompts from {train_file.name}: "
                f"{grpo.num_prompts_per_step} prompts x {grpo.num_generations_per_prompt} "
                f"generations per step, {grpo.max_num_steps} steps, device {device}")
    if balancer is not None:
        balancer.remove()
    save_policy(model, work_dir, tok_dir)
    rewards = [r["reward"] for r in _train_records(work_dir) if "reward" in r]
    first = sum(rewards[:3]) / len(rewards[:3]) if rewards else None
    final = sum(rewards[-3:]) / len(rewards[-3:]) if rewards else None
    print(f"[rl] done: {trainer.state.global_step} steps, mean reward "
          f"{_fmt(first)} (first 3 steps) -> {_fmt(final)} (last 3)", flush=True)
    values = {"reward": final, "initial_reward": first,
              "mean_reward": sum(rewards) / len(rewards) if rewards else None}
    return {
        "format": "hf",
        "stage": "rl",
        "step": int(trainer.state.global_step),
        "architecture": modeling.ARCHITECTURE,
        "metrics": {k: float(v) for k, v in values.items() if v is not None},
        "versions": modeling.library_versions(),
        "extra": {"algorithm": "grpo", "reward": grpo.reward, "prompts": len(records),
                  "base_model": input_ref(job, "model"), "tokenizer": ".",
                  "metrics_file": "metrics.jsonl", "rewards": rewards},
    }


def _fitting(records: list[dict[str, Any]], tokenizer, grpo) -> list[dict[str, Any]]:
    """Drop prompts that leave no room for ``max_new_tokens`` in the sequence budget."""
    budget = grpo.max_total_sequence_length - grpo.max_new_tokens
    kept = []
    for record in records:
        ids = tokenizer.apply_chat_template(record["prompt"], add_generation_prompt=True,
                                            tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        if len(ids) <= budget:
            kept.append(record)
    if not kept:
        raise UserError(
            f"no prompt fits grpo.max_total_sequence_length={grpo.max_total_sequence_length} "
            f"with grpo.max_new_tokens={grpo.max_new_tokens}",
            hint="raise grpo.max_total_sequence_length",
        )
    if len(kept) < len(records):
        print(f"[rl] {len(records) - len(kept)} prompts longer than {budget} tokens left out",
              flush=True)
    return kept


def _train_records(folder: Path) -> list[dict[str, Any]]:
    from nemotron.backends.local.metrics import read_metrics

    return [r for r in read_metrics(folder) if r.get("split") == "train"]


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"
