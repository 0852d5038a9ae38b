"""Typed configs for the data prep stages (the ``data:`` section of a prep config).

``PretrainPrepConfig`` (Megatron .bin/.idx blends), ``SftPrepConfig`` (packed Parquet),
``RlPrepConfig`` (NeMo-RL JSONL) and ``DpoPrepConfig`` (NeMo-RL preference JSONL) share
``SourceSpec``, ``TokenizerSpec`` and ``SplitSpec``.
All models are frozen and reject unknown keys; cross-field rules live in model validators and
say what to change. This module imports only pydantic and the standard library: the CLI and
the planner import it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from nemotron.config.shaping import runtime
from nemotron.strictness import NoBoolNumbers

PrepKind = Literal["pretrain", "sft", "rl", "dpo"]
SPLIT_NAMES = ("train", "valid", "test")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Tokens the Nemotron-3 chat format needs; a tokenizer trained by prep gets them as specials.
CHAT_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|pad|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)


class _Frozen(NoBoolNumbers):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSpec(_Frozen):
    """One input dataset: local files (a file, a folder, a glob) or an HF dataset by name."""

    name: str = Field(description="dataset name used in outputs and the blend ([A-Za-z0-9_.-])")
    path: str | None = Field(
        None,
        description="a file, a folder (all .jsonl/.jsonl.gz/.jsonl.zst/.parquet inside) or a glob;"
        " relative paths resolve against the working directory, then the repository root",
    )
    hf: str | None = Field(None, description="HF dataset repo id; needs the hub (never in tests)")
    hf_files: str = Field("*.parquet", description="glob of files to fetch from the HF repo")
    revision: str | None = Field(None, description="HF revision (branch, tag or commit)")
    format: Literal["auto", "jsonl", "parquet"] = Field(
        "auto", description="auto picks by file suffix (.jsonl, .jsonl.gz, .jsonl.zst, .parquet)"
    )
    field: str | None = Field(
        None, description="record field to read: default 'text' (pretrain), 'messages' (sft)"
    )
    weight: float = Field(1.0, gt=0, description="blend weight (pretrain); relative to the others")
    sample: int | None = Field(
        None, gt=0, description="take only the first N usable rows (smoke runs)"
    )

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"source name {self.name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]*; "
                "it becomes a folder name"
            )
        if (self.path is None) == (self.hf is None):
            raise ValueError(
                f"source {self.name!r}: set exactly one of 'path' (local files) or 'hf' "
                "(an HF dataset name)"
            )
        return self


class TokenizerTrainSpec(_Frozen):
    """Train a small byte-level BPE during prep (tiny runs; no hub needed)."""

    vocab_size: int = Field(4096, ge=300, le=1_000_000)
    sources: list[str] | None = Field(
        None, description="names of the sources to train on (default: all)"
    )
    max_bytes: int = Field(8_000_000, gt=0, description="text fed to the trainer, at most")
    min_frequency: int = Field(2, ge=1)
    special_tokens: list[str] = Field(default_factory=lambda: list(CHAT_SPECIAL_TOKENS))
    split_numbers: bool = Field(
        True,
        description="numbers become tokens of their own (up to 3 digits, no leading space, as "
        "in Llama 3's tokenizer), so a number is the same token after a space, a newline or "
        "a brace",
    )


class TokenizerSpec(_Frozen):
    """Where the tokenizer comes from: a local path, an HF name, or trained during prep."""

    path: str | None = Field(
        None,
        description="a folder holding tokenizer.json (and tokenizer_config.json), "
        "or a tokenizer.json file",
    )
    hf: str | None = Field(None, description="HF model repo id; needs the hub")
    revision: str | None = None
    train: TokenizerTrainSpec | None = None
    eod_token: str | None = Field(
        None,
        description="token that ends each document; default: tokenizer_config eos_token, "
        "else <|endoftext|>, else </s>",
    )
    bos_token: str | None = Field(
        None, description="token prepended when add_bos is on; default: tokenizer_config bos"
    )

    @model_validator(mode="after")
    def _check(self) -> TokenizerSpec:
        given = [k for k in ("path", "hf", "train") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "tokenizer: set exactly one of 'path' (local folder or tokenizer.json), 'hf' "
                f"(hub name) or 'train' (byte-level BPE trained during prep); got {given or 'none'}"
            )
        return self


class SplitSpec(_Frozen):
    """Ratios of documents per split (normalised); assigned by a hash of each document."""

    train: float = Field(0.98, ge=0)
    valid: float = Field(0.01, ge=0)
    test: float = Field(0.01, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SplitSpec:
        if self.train <= 0:
            raise ValueError("splits.train must be > 0 (it is the data the model trains on)")
        return self

    def fractions(self) -> tuple[float, float, float]:
        """The three ratios normalised to add up to 1 (99/1/0 and 0.99/0.01/0 are the same)."""
        total = self.train + self.valid + self.test
        return (self.train / total, self.valid / total, self.test / total)


class _PrepBase(_Frozen):
    sources: list[SourceSpec] = Field(default_factory=list)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    split_seed: int = Field(0, description="salt of the content hash that assigns splits")
    num_workers: int | None = runtime(
        None, why="worker count", ge=1,
        description="worker processes on this node (default: CPU count)",
    )
    shard_bytes: int = Field(
        256 * 2**20,
        ge=2**16,
        description="input bytes per work unit: plain JSONL files are cut at line boundaries, "
        "Parquet files by row groups; compressed JSONL is one unit per file. More units = more "
        "parallelism and more output shards",
    )
    strict: bool = runtime(
        False, why="a run that succeeds writes the same",
        description="fail on the first bad row instead of skipping it",
    )
    force: bool = runtime(
        False, why="how much is redone",
        description="rebuild even when receipts say the work is done",
    )

    @model_validator(mode="after")
    def _check_sources(self) -> _PrepBase:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; rename the repeated {dupes}")
        return self


class PretrainPrepConfig(_PrepBase):
    """Tokenize text into Megatron indexed datasets plus a per-split blend.json."""

    kind: Literal["pretrain"] = "pretrain"
    tokenizer: TokenizerSpec
    append_eod: bool = Field(True, description="append the EOD token to every document")
    add_bos: bool = Field(False, description="prepend the BOS token to every document")
    dtype: Literal["auto", "uint16", "int32"] = Field(
        "auto", description="auto: uint16 when the vocabulary has < 65500 tokens, else int32"
    )

    @model_validator(mode="after")
    def _check(self) -> PretrainPrepConfig:
        if not self.sources:
            raise ValueError("pretrain prep needs at least one entry in 'sources'")
        if self.tokenizer.train and self.tokenizer.train.sources:
            unknown = sorted(set(self.tokenizer.train.sources) - {s.name for s in self.sources})
            if unknown:
                raise ValueError(
                    f"tokenizer.train.sources names {unknown}, which are not in sources; "
                    f"use some of {[s.name for s in self.sources]}"
                )
        return self


class SftPrepConfig(_PrepBase):
    """Render chats, mask assistant tokens, pack into Parquet (REFERENCE section 3)."""

    kind: Literal["sft"] = "sft"
    tokenizer: TokenizerSpec
    chat_template: str = Field(
        "auto",
        description="'auto': the tokenizer's own template, else "
        "configs/chat_templates/nemotron3.jinja; or a path to a .jinja file (wins over the "
        "tokenizer's)",
    )
    pack_size: int = Field(4096, ge=16, description="tokens per packed row")
    packing: Literal["ffd", "first_fit_shuffle"] = Field(
        "ffd", description="ffd: first-fit-decreasing (tightest); first_fit_shuffle: seeded"
    )
    seed: int = Field(0, description="seed of first_fit_shuffle")
    overflow: Literal["drop", "truncate"] = Field(
        "drop", description="what to do with a sample longer than pack_size"
    )
    pad_to_multiple: int = Field(
        1, ge=1, description="pad each sample to a multiple of this (2*CP, or CP*TP*2 with SP)"
    )
    split_reasoning_turns: bool = Field(
        True, description="one sample per user turn when assistant turns carry reasoning"
    )
    end_of_turn_token: str = Field(
        "<|im_end|>", description="last token of an assistant turn that is trained on"
    )
    rows_per_shard: int = Field(2048, ge=1, description="packed rows per Parquet file")
    row_group_size: int = Field(128, ge=1, description="rows per Parquet row group")

    @model_validator(mode="after")
    def _check(self) -> SftPrepConfig:
        if not self.sources:
            raise ValueError("sft prep needs at least one entry in 'sources'")
        if self.pack_size % self.pad_to_multiple:
            raise ValueError(
                f"pack_size={self.pack_size} is not a multiple of pad_to_multiple="
                f"{self.pad_to_multiple}; use pack_size="
                f"{(self.pack_size // self.pad_to_multiple) * self.pad_to_multiple}"
            )
        if self.row_group_size > self.rows_per_shard:
            raise ValueError(
                f"row_group_size={self.row_group_size} exceeds rows_per_shard="
                f"{self.rows_per_shard}; lower row_group_size (128-256 reads well)"
            )
        return self


class RlGenerateSpec(_Frozen):
    """Generate verifiable arithmetic problems (exact integer answers) instead of reading files."""

    name: str = Field("arithmetic", description="dataset name of the generated problems")
    count: int = Field(2000, ge=1)
    seed: int = 0
    max_operand: int = Field(99, ge=2)
    operations: list[Literal["+", "-", "*"]] = Field(default_factory=lambda: ["+", "-", "*"])
    min_terms: int = Field(2, ge=2)
    max_terms: int = Field(3, ge=2)

    @model_validator(mode="after")
    def _check(self) -> RlGenerateSpec:
        if self.max_terms < self.min_terms:
            raise ValueError(
                f"generate.max_terms={self.max_terms} < min_terms={self.min_terms}; raise max_terms"
            )
        if not self.operations:
            raise ValueError("generate.operations is empty; use some of ['+', '-', '*']")
        return self


class RlPrepConfig(_PrepBase):
    """Write NeMo-RL / NeMo-Gym JSONL (train/val/test) from problems on disk or generated."""

    kind: Literal["rl"] = "rl"
    splits: SplitSpec = Field(default_factory=lambda: SplitSpec(train=0.9, valid=0.05, test=0.05))
    generate: RlGenerateSpec | None = None
    prompt_field: str = Field(
        "question",
        description="field holding the prompt for rows without responses_create_params",
    )
    system_prompt: str | None = Field(None, description="system message added to built prompts")
    agent_name: str = Field(
        "math_with_judge", description="agent_ref.name for rows that do not carry one"
    )
    tools: list[dict[str, Any]] | None = Field(
        None, description="tools put into responses_create_params for built prompts"
    )

    @model_validator(mode="after")
    def _check(self) -> RlPrepConfig:
        if not self.sources and self.generate is None:
            raise ValueError("rl prep needs 'sources', 'generate', or both")
        if self.generate and self.generate.name in {s.name for s in self.sources}:
            raise ValueError(
                f"generate.name={self.generate.name!r} clashes with a source name; rename one"
            )
        return self


class DpoGenerateSpec(_Frozen):
    """Generate tool-call preference pairs: chosen calls the offered calculator, rejected calls
    a tool nobody offered (the tiny recipe's stand-in for tool-hallucination data)."""

    name: str = Field("tool-pairs", description="dataset name of the generated pairs")
    count: int = Field(240, ge=1)
    seed: int = 0


class DpoPrepConfig(_PrepBase):
    """Write NeMo-RL preference JSONL (``context`` + ranked ``completions``) per split."""

    kind: Literal["dpo"] = "dpo"
    splits: SplitSpec = Field(default_factory=lambda: SplitSpec(train=0.9, valid=0.1, test=0.0))
    generate: DpoGenerateSpec | None = None
    prompt_field: str = Field(
        "prompt", description="field holding the prompt: text or a list of messages"
    )
    chosen_field: str = Field(
        "chosen", description="preferred response: text, one message or a list of messages"
    )
    rejected_field: str = Field("rejected", description="dispreferred response, same forms")
    tools_field: str = Field("tools", description="field holding the row's tool list, if any")
    system_prompt: str | None = Field(
        None, description="system message put before prompts that have none"
    )
    tools: list[dict[str, Any]] | None = Field(
        None, description="tools given to rows that carry none of their own"
    )

    @model_validator(mode="after")
    def _check(self) -> DpoPrepConfig:
        if not self.sources and self.generate is None:
            raise ValueError("dpo prep needs 'sources', 'generate', or both")
        if self.generate and self.generate.name in {s.name for s in self.sources}:
            raise ValueError(
                f"generate.name={self.generate.name!r} clashes with a source name; rename one"
            )
        if self.splits.fractions()[1] == 0:
            raise ValueError(
                "splits.valid is 0: DPO validates (and reports the held-out margin) on the "
                "valid split; give it a share, e.g. splits.valid=0.05"
            )
        return self


PrepConfig = Annotated[
    PretrainPrepConfig | SftPrepConfig | RlPrepConfig | DpoPrepConfig,
    Field(discriminator="kind"),
]
_PREP_ADAPTER: TypeAdapter[Any] = TypeAdapter(PrepConfig)
_BY_KIND = {
    "pretrain": PretrainPrepConfig, "sft": SftPrepConfig, "rl": RlPrepConfig,
    "dpo": DpoPrepConfig,
}


def prep_config(data: dict[str, Any], kind: str | None = None) -> Any:
    """Validate a ``data:`` dict into the model for ``kind`` (or the dict's own ``kind``)."""
    if kind is None:
        return _PREP_ADAPTER.validate_python(data)
    if kind not in _BY_KIND:
        raise ValueError(f"unknown prep kind {kind!r}; use one of {sorted(_BY_KIND)}")
    if data.get("kind", kind) != kind:
        raise ValueError(f"data.kind={data['kind']!r} does not match the stage kind {kind!r}")
    return _BY_KIND[kind].model_validate(data)
