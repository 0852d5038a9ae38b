"""Typed, frozen models for stage configs, and the cross-field rules between their values.

Every stage config is one ``StageConfig``: a ``run`` section (backend, inputs, resources) plus the
sections its kind uses. Field names follow Megatron's where one exists, shortened for parallelism
(``parallel.tp`` rather than ``tensor_model_parallel_size``); the megatron backend translates.

This module imports only pydantic and the standard library: it is read on the node too.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nemotron.config.shaping import reference, runtime
from nemotron.errors import UserError
from nemotron.strictness import NoBoolNumbers


class Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------------------------
# run: where and on what
class Resources(Strict):
    """Per-run resource overrides (``run.env.nodes=4``); unset keys come from the profile.

    Each key replaces the profile key of the same name and is checked by the profile's own
    rules when the plan applies it. ``nproc_per_node`` (the recipe docs' name for GPUs per node)
    is an alias of ``gpus_per_node``: in a config file the two must agree; on the command line
    the CLI rewrites it, so it overrides the config's ``gpus_per_node``. None of these is part
    of an output's identity.
    """

    nodes: int | None = Field(None, ge=1)
    ntasks_per_node: int | None = Field(None, ge=1)
    gpus_per_node: int | None = Field(None, ge=0)
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    container_image: str | None = None
    mounts: list[str] | None = Field(None, description="container mounts SRC:DST[:FLAGS]")
    retries: int | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _nproc_alias(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "nproc_per_node" not in data:
            return data
        data = dict(data)
        nproc = data.pop("nproc_per_node")
        gpus = data.get("gpus_per_node")
        if gpus is not None and nproc is not None and gpus != nproc:
            raise ValueError(
                f"nproc_per_node ({nproc}) and gpus_per_node ({gpus}) disagree; they are the "
                "same setting (GPUs per node): give one"
            )
        if nproc is not None:
            data["gpus_per_node"] = nproc
        return data


class RunSection(Strict):
    backend: Literal["local", "megatron", "nemo_rl", "evaluator", "prep"] = "local"
    data: str | None = reference(description="input data: NAME[:VERSION|:ALIAS] or a path")
    model: str | None = reference(description="input model: NAME[:VERSION|:ALIAS] or a path")
    inputs: dict[str, str] = reference(
        {}, description="the stage's other input slots: SLOT -> NAME[:VERSION|:ALIAS] or a path "
                        "(eval: run.inputs.base=..., run.inputs.sft=...)")
    env: Resources = runtime(Resources(), why="resources of this run")
    seed: int = 1234
    container: str | None = runtime(None, why="where it runs",
                                    description="container image for this stage")
    container_version: str | None = Field(
        None, description="library version the cluster backend targets in that container"
    )
    wandb: bool = runtime(True, why="logging")


# --------------------------------------------------------------------------------------------
# model architecture (Nemotron-H hybrid: M = Mamba-2, E = MoE, * = attention, - = dense MLP)
class ModelArch(Strict):
    hf_model_type: Literal["nemotron_h"] = "nemotron_h"
    hybrid_override_pattern: str
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=8)
    ffn_hidden_size: int | None = Field(None, ge=1, description="dense MLP ('-') layers")
    num_attention_heads: int = Field(ge=1)
    num_query_groups: int = Field(ge=1)
    kv_channels: int = Field(ge=1)
    mamba_state_dim: int = Field(ge=1)
    mamba_num_heads: int = Field(ge=1)
    mamba_head_dim: int = Field(ge=1)
    mamba_num_groups: int = Field(ge=1)
    mamba_conv_kernel: int = Field(4, ge=1)
    mamba_chunk_size: int = Field(128, ge=1)
    num_moe_experts: int | None = Field(None, ge=1)
    moe_router_topk: int | None = Field(None, ge=1)
    moe_ffn_hidden_size: int | None = Field(None, ge=1)
    moe_shared_expert_intermediate_size: int | None = Field(None, ge=0)
    moe_latent_size: int | None = Field(None, ge=1)
    moe_router_topk_scaling_factor: float = Field(1.0, gt=0)
    moe_router_score_function: Literal["sigmoid", "softmax"] = "sigmoid"
    moe_router_enable_expert_bias: bool = True
    moe_router_bias_update_rate: float = Field(1e-3, ge=0)
    moe_aux_loss_coeff: float = Field(1e-4, ge=0)
    moe_router_load_balancing_type: Literal["seq_aux_loss", "aux_loss", "none"] = "seq_aux_loss"
    mtp_num_layers: int | None = Field(None, ge=1)
    mtp_loss_scaling_factor: float = 0.3
    mtp_hybrid_override_pattern: str | None = None
    vocab_size: int = Field(ge=2)
    layernorm_epsilon: float = 1e-5
    activation: Literal["relu2"] = "relu2"
    position_embedding_type: Literal["none", "rope"] = "none"
    add_bias_linear: bool = False
    share_embeddings_and_output_weights: bool = False
    init_method_std: float = 0.02

    @model_validator(mode="after")
    def _check(self) -> ModelArch:
        pattern = self.hybrid_override_pattern
        bad = sorted(set(pattern) - set("ME*-"))
        if bad:
            raise ValueError(
                f"hybrid_override_pattern has unknown layer symbols {bad}; use M (Mamba-2), "
                "E (MoE), * (attention), - (dense MLP)"
            )
        if len(pattern) != self.num_layers:
            raise ValueError(
                f"hybrid_override_pattern has {len(pattern)} layers but num_layers is "
                f"{self.num_layers}; set model.num_layers={len(pattern)} or change the pattern"
            )
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_query_groups ({self.num_query_groups})"
            )
        if (self.mamba_num_heads * self.mamba_head_dim) % self.mamba_num_groups:
            raise ValueError("mamba_num_heads x mamba_head_dim must divide by mamba_num_groups")
        if "E" in pattern:
            missing = [
                k for k in ("num_moe_experts", "moe_router_topk", "moe_ffn_hidden_size")
                if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(f"the pattern has MoE layers (E) but {', '.join(missing)} unset")
            if self.moe_router_topk > self.num_moe_experts:
                raise ValueError(
                    f"moe_router_topk ({self.moe_router_topk}) exceeds num_moe_experts "
                    f"({self.num_moe_experts})"
                )
        if "-" in pattern and self.ffn_hidden_size is None:
            raise ValueError("the pattern has dense MLP layers (-) but ffn_hidden_size is unset")
        return self


# --------------------------------------------------------------------------------------------
# training
class Parallelism(Strict):
    tp: int = Field(1, ge=1, description="tensor parallel size")
    pp: int = Field(1, ge=1, description="pipeline parallel size")
    cp: int = Field(1, ge=1, description="context parallel size")
    ep: int = Field(1, ge=1, description="expert parallel size")
    etp: int = Field(1, ge=1, description="expert tensor parallel size")
    sp: bool = Field(False, description="sequence parallel")
    distributed_optimizer: bool = True


class Train(Strict):
    global_batch_size: int = Field(ge=1)
    micro_batch_size: int = Field(1, ge=1)
    seq_length: int = Field(ge=8)
    train_iters: int = Field(ge=1)
    log_interval: int = runtime(10, why="logging interval", ge=1)
    eval_interval: int | None = runtime(None, why="validation interval", ge=1)
    eval_iters: int = runtime(0, why="validation only measures", ge=0)
    save_interval: int | None = runtime(None, why="checkpoint interval", ge=1)
    precision: Literal["bf16", "fp16", "fp32", "fp8", "nvfp4"] = "bf16"
    precision_keep_bf16_last_layers: int = Field(0, ge=0)
    num_workers: int = runtime(0, why="data loader workers", ge=0)


class Optimizer(Strict):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(gt=0)
    min_lr: float = Field(0.0, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = 1e-8
    weight_decay: float = Field(0.1, ge=0)
    clip_grad: float = Field(1.0, ge=0)


class Scheduler(Strict):
    """``wsd``: warmup, stable at lr, then decay over ``decay_iters`` to min_lr."""

    style: Literal["wsd", "cosine", "constant", "linear"] = "wsd"
    warmup_iters: int = Field(0, ge=0)
    decay_iters: int | None = Field(None, ge=0, description="wsd: length of the final decay")
    decay_style: Literal["linear", "cosine", "minus_sqrt", "exponential"] = "linear"


class Checkpoint(Strict):
    save_interval: int | None = runtime(None, why="checkpoint interval", ge=1)
    keep_last: int = runtime(2, why="checkpoints kept on disk", ge=1)
    format: Literal["torch_dist", "hf"] = "torch_dist"
    load_optimizer: bool = True


class Peft(Strict):
    type: Literal["lora", "dora"] = "lora"
    rank: int = Field(32, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = [
        "linear_qkv", "linear_proj", "linear_fc1", "linear_fc2", "in_proj", "out_proj",
    ]


class Logging(Strict):
    wandb_project: str | None = None
    wandb_entity: str | None = None
    tensorboard: bool = False


class MoeBalancing(Strict):
    """Aux-loss-free balancing (the expert-bias update); the local backend applies it itself."""

    expert_bias_update: bool = True


class SftData(Strict):
    pack_size: int | None = Field(None, ge=8)
    packed: bool = True
    split: str = "train"


class NoData(Strict):
    """Stages that read no ``data:`` options (their inputs come as artifacts)."""


class PretrainData(Strict):
    blend: str | None = Field(None, description="blend.json path (default: the input artifact's)")
    split: str = Field("98,1,1", description="used only when the blend has a single 'train' list")
    mock: bool = False


class Grpo(Strict):
    num_prompts_per_step: int = Field(ge=1)
    num_generations_per_prompt: int = Field(ge=2)
    max_num_steps: int = Field(ge=1)
    max_total_sequence_length: int = Field(ge=8)
    max_new_tokens: int = Field(64, ge=1)
    kl_coeff: float = Field(0.0, ge=0)
    ratio_clip_min: float = Field(0.2, ge=0)
    ratio_clip_max: float = Field(0.28, ge=0)
    token_level_loss: bool = True
    temperature: float = Field(1.0, gt=0)
    reward: Literal["exact_match", "nemo_gym"] = "exact_match"
    environments: list[str] = []
    ray: bool = runtime(False, why="how the workers are started")
    genrm_model: str | None = Field(
        None, description="GenRM checkpoint (HF folder or id) that judges rollouts in RLHF "
        "recipes (NeMo-RL super-v3 stage3_rlhf)")


class Dpo(Strict):
    """Direct preference optimisation on chosen/rejected pairs (NeMo-RL on clusters, TRL here)."""

    max_num_steps: int = Field(ge=1)
    max_num_epochs: int = Field(1, ge=1)
    global_batch_size: int = Field(ge=1, description="preference pairs per optimizer step")
    micro_batch_size: int = Field(1, ge=1)
    max_total_sequence_length: int = Field(ge=8, description="longer pairs are left out")
    beta: float = Field(0.05, gt=0, description="strength of the pull toward the reference")
    loss: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="sigmoid = the DPO loss; ipo, hinge, robust are its variants")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="robust: label flip rate")
    preference_loss_weight: float = Field(1.0, ge=0)
    sft_loss_weight: float = Field(0.0, ge=0, description="NLL on the chosen response (RPO)")
    average_log_probs: bool = Field(
        False, description="length-normalise the response log-probs in the preference loss")
    reference: Literal["initial", "sync"] = Field(
        "initial", description="initial: the frozen input model; sync: TR-DPO, the reference "
        "is mixed toward the policy every ref_sync_steps")
    ref_sync_steps: int = Field(64, ge=1)
    ref_mixup_alpha: float = Field(0.6, ge=0, le=1)
    val_period: int | None = runtime(None, why="validation interval", ge=1)
    val_global_batch_size: int = runtime(8, why="validation only measures", ge=1)

    @model_validator(mode="after")
    def _check(self) -> Dpo:
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"dpo.global_batch_size={self.global_batch_size} is not a multiple of "
                f"dpo.micro_batch_size={self.micro_batch_size}")
        if self.preference_loss_weight == 0 and self.sft_loss_weight == 0:
            raise ValueError("dpo.preference_loss_weight and dpo.sft_loss_weight are both 0: "
                             "nothing to train; set preference_loss_weight=1")
        return self


class EvalTask(Strict):
    name: str
    num_fewshot: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1)
    path: str | None = None


class Evaluation(Strict):
    harness: Literal["lm_eval", "nemo_evaluator"] = "lm_eval"
    tasks: list[EvalTask]
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    deployment: dict[str, Any] = runtime({}, why="where the model is served")


class ModelOp(Strict):
    """Options of the model commands (import, export, merge-lora, roundtrip, compare, quantize)."""

    hf_path: str | None = None
    megatron_path: str | None = None
    quant_config: (
        Literal[
            "mamba_moe_fp8_aggressive",
            "mamba_moe_fp8_conservative",
            "mamba_moe_nvfp4_aggressive",
            "mamba_moe_nvfp4_conservative",
        ]
        | None
    ) = None
    calib_size: int = Field(512, ge=1)
    prompt: str = "The capital of France is"
    min_cosine: float = Field(0.99, gt=0, le=1)
    atol: float = Field(1e-5, ge=0)


# --------------------------------------------------------------------------------------------
# the whole stage config
class StageConfig(Strict):
    run: RunSection = RunSection()
    model: ModelArch | None = None
    parallel: Parallelism = runtime(Parallelism(), why="how the work is split over GPUs")
    train: Train | None = None
    optimizer: Optimizer | None = None
    scheduler: Scheduler = Scheduler()
    checkpoint: Checkpoint = Checkpoint()
    peft: Peft | None = None
    logging: Logging = runtime(Logging(), why="logging")
    moe: MoeBalancing = MoeBalancing()
    data: NoData = NoData()  # typed by the stage's kind: see nemotron.config.stage
    grpo: Grpo | None = None
    dpo: Dpo | None = None
    eval: Evaluation | None = None
    op: ModelOp | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> StageConfig:
        par, model, train, sched = self.parallel, self.model, self.train, self.scheduler
        if model is not None and model.num_moe_experts:
            if model.num_moe_experts % par.ep:
                options = [d for d in (1, 2, 4, 8, 16, 32, 64) if model.num_moe_experts % d == 0]
                raise ValueError(
                    f"parallel.ep={par.ep} does not divide model.num_moe_experts="
                    f"{model.num_moe_experts}; use one of {options}"
                )
            if par.tp > 1 and not par.sp:
                raise ValueError(
                    f"MoE with parallel.tp={par.tp} requires sequence parallel; "
                    "set parallel.sp=true"
                )
        if train is not None:
            if par.cp > 1 and train.seq_length % (2 * par.cp):
                raise ValueError(
                    f"train.seq_length={train.seq_length} must be divisible by 2 x parallel.cp "
                    f"= {2 * par.cp}"
                )
            warm, decay = sched.warmup_iters, sched.decay_iters or 0
            if warm + decay > train.train_iters:
                iters = train.train_iters
                fit = f"scheduler.warmup_iters={iters // 10}"
                if decay:
                    fit += f" scheduler.decay_iters={iters // 5}"
                raise ValueError(
                    f"scheduler.warmup_iters ({warm}) + scheduler.decay_iters ({decay}) exceed "
                    f"train.train_iters ({iters}); lower them (e.g. {fit}) or raise train_iters"
                )
        if self.optimizer is not None and self.optimizer.min_lr > self.optimizer.lr:
            raise ValueError(
                f"optimizer.min_lr ({self.optimizer.min_lr}) exceeds optimizer.lr "
                f"({self.optimizer.lr})"
            )
        return self


def check_world(cfg: StageConfig, nodes: int, gpus_per_node: int) -> None:
    """Rules that need the resources (known once the profile is applied)."""
    par, train = cfg.parallel, cfg.train
    if train is None or gpus_per_node == 0:
        return
    world = nodes * gpus_per_node
    model_parallel = par.tp * par.pp * par.cp
    if world % model_parallel:
        raise UserError(
            f"{nodes} node(s) x {gpus_per_node} GPUs = {world} GPUs is not divisible by "
            f"tp x pp x cp = {par.tp} x {par.pp} x {par.cp} = {model_parallel}",
            hint="change run.env.nodes / run.env.gpus_per_node or the parallel sizes",
        )
    dp = world // model_parallel
    if (world // par.pp) % (par.ep * par.etp):
        raise UserError(
            f"{world} GPUs / pp {par.pp} = {world // par.pp} is not divisible by "
            f"ep x etp = {par.ep * par.etp}",
            hint="lower parallel.ep or add GPUs",
        )
    if train.global_batch_size % (train.micro_batch_size * dp):
        raise UserError(
            f"train.global_batch_size={train.global_batch_size} is not divisible by "
            f"micro_batch_size x data-parallel size = {train.micro_batch_size} x {dp}",
            hint=f"use a multiple of {train.micro_batch_size * dp}",
        )


# --------------------------------------------------------------------------------------------
# decoding with helpful errors
def decode(
    config: dict[str, Any], source: str = "config", model: type[StageConfig] = StageConfig
) -> StageConfig:
    """Decode a merged config dict into ``model``; errors name the dotted path."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        raise UserError(*explain(exc, source, model)) from None


def explain(
    exc: ValidationError, source: str, model: type[BaseModel] = StageConfig
) -> tuple[str, str | None]:
    """One or two lines for the first error: the dotted key, and the closest valid key."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
    dotted = ".".join(loc)
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if err["type"] == "extra_forbidden":
        parent_model = _model_at(model, loc[:-1])
        valid = sorted(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        prefix = ".".join(loc[:-1])
        hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else (
            f"valid keys here: {', '.join(valid)}" if valid else None
        )
        return f"{source}: unknown key '{dotted}'{more}", hint
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{source}: '{dotted}' is required{more}", f"set it, e.g. {_leaf(model, loc)}=..."
    where = f"'{dotted}': " if dotted else ""
    value = f" (got {err['input']!r})" if loc and not isinstance(err.get("input"), dict) else ""
    if err["type"] == "string_type" and isinstance(err.get("input"), dict):  # `a=x:y:` is a map
        return (f"{source}: {where}{msg} (got the mapping {err['input']!r}){more}",
                f"YAML reads 'k: v' and a trailing ':' as a mapping; quote it: {dotted}='\"...\"'")
    return f"{source}: {where}{msg}{value}{more}", None


def _leaf(model: type[BaseModel], loc: list[str]) -> str:
    """A settable key for a missing field: a section's first required key (``tokenizer.path``)."""
    section = _model_at(model, loc)
    if section is None:
        return ".".join(loc)
    fields = section.model_fields
    first = "path" if "path" in fields else next(
        (name for name, f in fields.items() if f.is_required()), None)
    return ".".join([*loc, first] if first else loc)


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    import types
    import typing

    current: Any = model
    for part in path:
        if part.isdigit() and typing.get_origin(current) is list:
            current = typing.get_args(current)[0]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0] if args else ann
        current = ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None
