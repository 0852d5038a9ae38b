"""Node-side pieces that run without Megatron-Bridge: applying overrides to an object tree,
Parquet -> .npy packing for nano-v3, the numeric verdicts, and the upstream script commands."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from nemotron.backends.megatron import commands
from nemotron.backends.megatron.apply import apply_overrides
from nemotron.backends.megatron.translate import BridgeInputs, to_bridge
from nemotron.backends.megatron.versions import resolve_target
from tests.backends.cluster.cluster_helpers import load_config


# Stand-ins shaped like the ConfigContainer sections (plain dataclasses, names as upstream).
@dataclass
class Specs:
    packed_sequence_size: int = -1
    packed_train_data_path: str | None = None
    packed_val_data_path: str | None = None
    pad_seq_to_mult: int | None = 1


@dataclass(kw_only=True)
class Finetuning:
    seq_length: int
    dataset_root: str | None = None
    packed_sequence_specs: Specs | None = None
    seed: int = 0
    dataloader_type: str | None = None
    do_validation: bool = True
    do_test: bool = True


@dataclass
class Squad:
    seq_length: int = 2048


@dataclass
class LoRA:
    dim: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list = field(default_factory=list)


@dataclass
class Precision:
    name: str
    num_layers_at_end_in_bf16: int = 0


@dataclass
class Model:
    tensor_model_parallel_size: int = 1
    hybrid_override_pattern: str = ""


@dataclass
class Container:
    model: Model = field(default_factory=Model)
    dataset: object = field(default_factory=Squad)
    peft: object | None = None
    mixed_precision: object = "bf16_mixed"


CLASSES = {"FinetuningDatasetConfig": Finetuning, "PackedSequenceSpecs": Specs, "LoRA": LoRA}


def test_targets_replace_sections_and_nested_sections():
    root = Container(peft=LoRA())
    apply_overrides(root, {
        "model.tensor_model_parallel_size": 4,
        "dataset._target_": "FinetuningDatasetConfig",
        "dataset.seq_length": 4096,
        "dataset.dataset_root": "/run/out/sft_dataset",
        "dataset.packed_sequence_specs._target_": "PackedSequenceSpecs",
        "dataset.packed_sequence_specs.packed_sequence_size": 4096,
        "dataset.packed_sequence_specs.packed_train_data_path": "/d/train",
        "peft._target_": "LoRA",
        "peft.dim": 32,
    }, resolve_class=CLASSES.__getitem__)
    assert root.model.tensor_model_parallel_size == 4
    assert isinstance(root.dataset, Finetuning) and root.dataset.seq_length == 4096
    assert root.dataset.packed_sequence_specs == Specs(4096, "/d/train", None, 1)
    assert isinstance(root.peft, LoRA) and root.peft.dim == 32 and root.peft.alpha == 16


def test_string_sections_are_resolved_before_their_fields_are_set():
    root = Container()
    apply_overrides(root, {"mixed_precision": "bf16_with_nvfp4_mixed",
                           "mixed_precision.num_layers_at_end_in_bf16": 14},
                    resolve_class=CLASSES.__getitem__,
                    resolve_string=lambda section, name: Precision(name))
    assert root.mixed_precision == Precision("bf16_with_nvfp4_mixed", 14)


def test_blends_become_tuples_as_megatron_core_expects():
    @dataclass
    class Data:
        blend: object = None
        blend_per_split: object = None

    @dataclass
    class Root:
        dataset: Data = field(default_factory=Data)

    root = Root()
    apply_overrides(root, {"dataset.blend_per_split": [[["/a", "/b"], [0.5, 0.5]], None, None],
                           "dataset.blend": None})
    assert root.dataset.blend_per_split == [(["/a", "/b"], [0.5, 0.5]), None, None]


def test_a_real_sft_translation_applies_to_the_stand_ins():
    cfg = load_config("super3", "sft", "lora")[1]
    spec = to_bridge(cfg, BridgeInputs(out_dir="/o", sft_train="/d/train", sft_valid="/d/valid",
                                       pack_size=4096, base_checkpoint="/m"), "sft")
    wanted = {k: v for k, v in spec["overrides"].items()
              if k.split(".")[0] in ("dataset", "peft")}
    root = Container(peft=LoRA())
    apply_overrides(root, wanted, resolve_class=CLASSES.__getitem__)
    assert root.dataset.packed_sequence_specs.packed_val_data_path == "/d/valid"
    assert root.dataset.packed_sequence_specs.packed_sequence_size == 4096
    # CP 2 with TP 4 and SP: sub-sequences padded to lcm(2 x CP, CP x TP) = 8
    assert root.dataset.packed_sequence_specs.pad_seq_to_mult == 8
    assert root.peft.target_modules[-2:] == ["in_proj", "out_proj"] and root.peft.dim == 32


# ------------------------------------------------------------------------- packed .npy
def test_parquet_rows_copy_into_the_npy_that_nano_v3_reads(tmp_path):
    np = pytest.importorskip("numpy")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from nemotron.backends.megatron.packed import parquet_to_npy

    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "loss_mask": [0, 1, 0, 1, 0], "seq_start_id": [0, 3]},
        {"input_ids": [1, 2, 3], "loss_mask": [1, 1, 0], "seq_start_id": [0]},
        {"input_ids": [4, 4], "loss_mask": [1, 0], "seq_start_id": [0]},
    ]
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("loss_mask", pa.list_(pa.uint8())),
                        ("seq_start_id", pa.list_(pa.int32()))])
    folder = tmp_path / "train"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:2], schema), folder / "part-000.parquet",
                   row_group_size=1)
    pq.write_table(pa.Table.from_pylist(rows[2:], schema), folder / "part-001.parquet")
    out = tmp_path / "packed" / "train.npy"
    assert parquet_to_npy(folder, out) == 3
    loaded = np.load(out, allow_pickle=True)
    assert [dict(r) for r in loaded] == rows
    assert not list(out.parent.glob("*.tmp*"))


def test_a_folder_without_parquet_is_a_user_error(tmp_path):
    from nemotron.backends.megatron.packed import parquet_files
    from nemotron.errors import UserError

    with pytest.raises(UserError):
        parquet_files(tmp_path)


# ------------------------------------------------------------------------- numerics
def test_weight_comparison_finds_every_kind_of_difference():
    torch = pytest.importorskip("torch")
    from nemotron.backends.megatron.numerics import compare_weights

    ref = {"a": torch.ones(2, 3), "b": torch.zeros(4), "c": torch.arange(3.0),
           "gone": torch.ones(1)}
    exported = [("a", torch.ones(2, 3)), ("b", torch.zeros(4) + 1e-3),
                ("c", torch.arange(4.0)), ("new", torch.ones(1))]
    report = compare_weights(exported, ref.get, reference_names=ref, atol=1e-5)
    assert report["compared"] == 3 and report["matched"] == 1
    assert {m["name"] for m in report["mismatched"]} == {"b", "c"}
    assert report["missing"] == ["gone"] and report["unexpected"] == ["new"]
    assert report["passed"] is False and report["worst"] == "b"
    same = compare_weights([("a", ref["a"].to(torch.bfloat16))], ref.get, ["a"], atol=0.0)
    assert same["passed"] and same["max_abs_diff"] == 0.0


def test_logit_comparison_trims_padding_and_applies_the_threshold():
    torch = pytest.importorskip("torch")
    from nemotron.backends.megatron.numerics import compare_logits

    gen = torch.Generator().manual_seed(0)
    hf = torch.randn(100, generator=gen)
    padded = torch.cat([hf + 0.01 * torch.randn(100, generator=gen), torch.full((28,), -50.0)])
    good = compare_logits(hf, padded, 0.99)
    assert good["passed"] and good["top1_match"] and good["cosine"] > 0.99
    bad = compare_logits(hf, torch.randn(128, generator=gen), 0.99)
    assert not bad["passed"] and bad["cosine"] < 0.5


# ------------------------------------------------------------------------- commands
def test_world_size_fits_model_and_expert_parallelism():
    cfg = load_config("super3", "model-quantize", "default")[1]
    assert commands.world_size(cfg.parallel) == 8  # TP 8, EP 8 share the 8 ranks
    lora = load_config("super3", "sft", "lora")[1]
    assert commands.world_size(lora.parallel) == 8  # TP 4 x CP 2


def test_merge_lora_runs_as_one_process_on_nano_v3_and_under_torchrun_on_super_v3():
    nano = load_config("nano3", "model-merge-lora", "default")[1]
    target, _, _ = resolve_target("nano-v3")
    cmd = commands.merge_lora_command(target, "/mb", nano.parallel, lora_checkpoint="/l/iter_1",
                                      output="/o", hf_model="hf", pretrained="/b")
    assert cmd[:2] == ["python", "/mb/examples/peft/merge_lora.py"] and "--tp" not in cmd
    sup = load_config("super3", "model-merge-lora", "default")[1]
    target, _, _ = resolve_target("super-v3")
    cmd = commands.merge_lora_command(target, "/mb", sup.parallel, lora_checkpoint="/l/iter_1",
                                      output="/o", hf_model="hf", pretrained=None)
    assert cmd[:2] == ["torchrun", "--nproc-per-node=8"] and cmd[-6:] == [
        "--tp", "1", "--pp", "1", "--ep", "8"] and "--pretrained" not in cmd


def test_quantize_command_carries_the_preset():
    cfg = load_config("super3", "model-quantize", "default",
                      ["op.quant_config=mamba_moe_fp8_aggressive"])[1]
    target, _, _ = resolve_target("super-v3")
    cmd = commands.quantize_command(target, "/mb", cfg.parallel, hf_model="/hf",
                                    quant_config=cfg.op.quant_config, save_path="/o/ckpt",
                                    calib_size=cfg.op.calib_size)
    assert cmd[cmd.index("--export-quant-cfg") + 1] == "mamba_moe_fp8_aggressive"
    assert set(commands.QUANT_CONFIGS) == {
        f"mamba_moe_{fmt}_{kind}" for fmt in ("fp8", "nvfp4")
        for kind in ("aggressive", "conservative")}
