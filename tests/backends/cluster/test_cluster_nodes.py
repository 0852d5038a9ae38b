"""The node-side entry functions up to the point where the NVIDIA libraries take over: real job
files and artifact folders in, the exact spec / config / command that would run out. The library
calls themselves (Megatron-Bridge, NeMo-RL, the launcher) are replaced by recorders."""

from __future__ import annotations

import json

import pytest
import yaml

from nemotron.errors import UserError
from tests.backends.cluster.cluster_helpers import load_config, make_job
from tests.backends.cluster.test_cluster_checks import NANO_HF, SUPER_HF


def job_for(tmp_path, family, stage, config, overrides=(), inputs=None, **kw):
    st, cfg = load_config(family, stage, config, list(overrides))
    job = make_job(tmp_path, family=family, stage=stage, entry=st.entry,
                   config=cfg.model_dump(mode="json"), inputs=inputs, **kw)
    work = tmp_path / "out.partial"
    work.mkdir(exist_ok=True)
    return job, cfg, work


def megatron_checkpoint_dir(root, step):
    ckpt = root / "checkpoints"
    (ckpt / f"iter_{step:07d}").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text(str(step))
    return ckpt


@pytest.fixture
def recorded(monkeypatch):
    """Replace run_bridge: keep what would have been handed to Megatron-Bridge."""
    calls = []

    def fake(spec, job, cfg, work_dir, *, stage, extra=None):
        calls.append({"spec": spec, "stage": stage, "extra": extra or {}})
        return {"stage": stage}

    monkeypatch.setattr("nemotron.backends.megatron.train.run_bridge", fake)
    return calls


# ------------------------------------------------------------------------- megatron pretrain
def pretrain_data(tmp_path):
    data = tmp_path / "data"
    (data / "tokenizer").mkdir(parents=True)
    (data / "blend.json").write_text(json.dumps({
        "train": ["3", "train/shard_0", "1", "/abs/train/shard_1"],
        "valid": ["1", "valid/shard_0"], "test": None}))
    return {"data": {"kind": "pretrain-data", "path": str(data), "name": "nano3-pretrain-data",
                     "metadata": {"blend": "blend.json", "tokenizer": "tokenizer"}}}


def test_pretrain_reads_the_blend_with_absolute_prefixes(tmp_path, recorded):
    from nemotron.backends.megatron import pretrain

    job, cfg, work = job_for(tmp_path, "nano3", "pretrain", "default",
                             inputs=pretrain_data(tmp_path), wandb={"project": "p"})
    pretrain(job, cfg, work, tmp_path / "out")
    over = recorded[0]["spec"]["overrides"]
    data = str(tmp_path / "data")
    assert over["dataset.blend_per_split"] == [
        [[f"{data}/train/shard_0", "/abs/train/shard_1"], [3.0, 1.0]],
        [[f"{data}/valid/shard_0"], [1.0]], None]
    assert over["tokenizer.tokenizer_model"] == f"{data}/tokenizer"  # inside the artifact
    assert over["checkpoint.load"] == str(work / "checkpoints")
    assert over["logger.wandb_project"] == "p" and over["logger.wandb_exp_name"] == job.job.id


def test_phase_two_continues_phase_one_from_a_checkpoint_path(tmp_path, recorded):
    from nemotron.backends.megatron import pretrain

    phase1 = megatron_checkpoint_dir(tmp_path / "phase1", 933806)
    job, cfg, work = job_for(tmp_path, "nano3", "pretrain", "phase2", [f"run.model={phase1}"],
                             inputs=pretrain_data(tmp_path))
    pretrain(job, cfg, work, tmp_path / "out")
    over = recorded[0]["spec"]["overrides"]
    assert over["checkpoint.load"] == str(phase1)  # full state: iteration and optimizer
    assert "checkpoint.pretrained_checkpoint" not in over
    assert recorded[0]["extra"]["continued_from"] == str(phase1)


def test_long_context_starts_fresh_from_the_weights(tmp_path, recorded):
    from nemotron.backends.megatron import pretrain

    phase2 = megatron_checkpoint_dir(tmp_path / "phase2", 993411)
    job, cfg, work = job_for(tmp_path, "nano3", "pretrain", "long-context",
                             [f"run.model={phase2}"], inputs=pretrain_data(tmp_path))
    pretrain(job, cfg, work, tmp_path / "out")
    over = recorded[0]["spec"]["overrides"]
    assert over["checkpoint.pretrained_checkpoint"] == str(phase2)
    assert over["checkpoint.load"] == str(work / "checkpoints")


def test_a_retry_resumes_from_its_own_checkpoints(tmp_path, recorded):
    from nemotron.backends.megatron import pretrain

    phase1 = megatron_checkpoint_dir(tmp_path / "phase1", 933806)
    job, cfg, work = job_for(tmp_path, "nano3", "pretrain", "phase2", [f"run.model={phase1}"],
                             inputs=pretrain_data(tmp_path))
    megatron_checkpoint_dir(work, 940000)
    pretrain(job, cfg, work, tmp_path / "out")
    assert recorded[0]["spec"]["overrides"]["checkpoint.load"] == str(work / "checkpoints")


def test_an_unresolvable_previous_phase_is_a_user_error(tmp_path, recorded):
    from nemotron.backends.megatron import pretrain

    job, cfg, work = job_for(tmp_path, "nano3", "pretrain", "phase2",
                             inputs=pretrain_data(tmp_path))
    with pytest.raises(UserError) as err:
        pretrain(job, cfg, work, tmp_path / "out")
    assert "nano3-pretrain-model-phase1" in err.value.message
    assert not recorded


# ------------------------------------------------------------------------- megatron sft / qat
def sft_inputs(tmp_path, model_meta=None, model_path=None):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = tmp_path / "sft"
    for split in ("train", "valid"):
        (data / split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(
            [{"input_ids": [1, 2, 3], "loss_mask": [1, 1, 0], "seq_start_id": [0]}]),
            data / split / "part-0.parquet")
    if model_path is None:
        model_path = tmp_path / "base"
        megatron_checkpoint_dir(model_path, 10)
    return {
        "data": {"kind": "sft-data", "path": str(data), "name": "x-sft-data",
                 "metadata": {"parquet": {"train": "train", "valid": "valid"},
                              "pack_size": 4096, "tokenizer": "/tok"}},
        "model": {"kind": "model", "path": str(model_path), "name": "x-model",
                  "metadata": model_meta or {"format": "megatron", "checkpoint": "checkpoints",
                                             "extra": {"hf_source": "nvidia/x"}}},
    }


def test_nano_v3_sft_converts_the_parquet_to_npy(tmp_path, recorded):
    from nemotron.backends.megatron import sft

    job, cfg, work = job_for(tmp_path, "nano3", "sft", "default", inputs=sft_inputs(tmp_path))
    sft(job, cfg, work, tmp_path / "out")
    over = recorded[0]["spec"]["overrides"]
    specs = "dataset.packed_sequence_specs"
    assert over[f"{specs}.packed_train_data_path"] == str(work / "sft_dataset/packed/train.npy")
    assert (work / "sft_dataset/packed/train.npy").is_file()
    assert (work / "sft_dataset/packed/valid.npy").is_file()
    assert over["checkpoint.pretrained_checkpoint"] == str(tmp_path / "base/checkpoints")
    assert recorded[0]["spec"]["recipe"]["kwargs"] == {"peft": None}
    assert recorded[0]["extra"]["hf_source"] == "nvidia/x"  # carried on for export and RL


def test_super_v3_sft_reads_the_parquet_folders(tmp_path, recorded):
    from nemotron.backends.megatron import sft

    job, cfg, work = job_for(tmp_path, "super3", "sft", "default", inputs=sft_inputs(tmp_path))
    sft(job, cfg, work, tmp_path / "out")
    over = recorded[0]["spec"]["overrides"]
    assert over["dataset.packed_sequence_specs.packed_train_data_path"] == str(
        tmp_path / "sft/train")
    assert not (work / "sft_dataset").exists()


def test_sft_refuses_a_hugging_face_base_with_the_import_hint(tmp_path, recorded):
    from nemotron.backends.megatron import sft

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(NANO_HF))
    inputs = sft_inputs(tmp_path, {"format": "hf"}, model_path=hf)
    job, cfg, work = job_for(tmp_path, "nano3", "sft", "default", inputs=inputs)
    with pytest.raises(UserError) as err:
        sft(job, cfg, work, tmp_path / "out")
    assert "model import" in err.value.hint


def test_a_quantized_base_makes_it_qat(tmp_path, recorded):
    from nemotron.backends.megatron import sft

    meta = {"format": "megatron", "checkpoint": "checkpoints", "stage": "quantize",
            "extra": {"quant_config": "mamba_moe_nvfp4_conservative"}}
    inputs = sft_inputs(tmp_path, meta)
    inputs["data"]["metadata"]["pack_size"] = 8192
    job, cfg, work = job_for(tmp_path, "super3", "qat", "default", inputs=inputs)
    sft(job, cfg, work, tmp_path / "out")
    call = recorded[0]
    assert call["stage"] == "qat" and call["extra"]["quant_config"].startswith("mamba_moe")
    assert call["spec"]["overrides"]["model.restore_modelopt_state"] is True


def test_qat_data_must_be_packed_at_its_sequence_length(tmp_path, recorded):
    from nemotron.backends.megatron import sft

    meta = {"format": "megatron", "checkpoint": "checkpoints",
            "extra": {"quant_config": "mamba_moe_fp8_aggressive"}}
    job, cfg, work = job_for(tmp_path, "super3", "qat", "default",
                             inputs=sft_inputs(tmp_path, meta))
    with pytest.raises(UserError) as err:
        sft(job, cfg, work, tmp_path / "out")
    assert "pack size 4096" in err.value.message and "train.seq_length=4096" in err.value.hint


def test_metadata_records_the_target_version(tmp_path):
    from nemotron.backends.megatron.train import model_metadata
    from nemotron.lineage.kinds import validate_metadata
    from tests.backends.cluster.test_cluster_golden import spec_for

    job, cfg, work = job_for(tmp_path, "nano3", "sft", "lora")
    megatron_checkpoint_dir(work, 100)
    meta = model_metadata(spec_for("nano3", "sft", "lora"), job, cfg, work, stage="sft")
    assert meta["step"] == 100 and meta["peft"] == "lora"
    assert meta["versions"]["megatron-bridge"].startswith("nano-v3@1cedb0a9c")
    assert meta["extra"]["container_version"] == "nano-v3"
    validate_metadata("model", meta)


# ------------------------------------------------------------------------- model commands
def test_model_operations_dispatch_on_the_stage_and_check_their_inputs(tmp_path):
    from nemotron.backends.megatron import model

    job, cfg, work = job_for(tmp_path, "nano3", "model-import", "default")
    job = job.model_copy(update={"job": job.job.model_copy(update={"stage": "model-frobnicate"})})
    with pytest.raises(UserError, match="no model operation 'frobnicate'"):
        model(job, cfg, work, tmp_path / "out")
    job, cfg, work = job_for(tmp_path, "super3", "model-quantize", "default",
                             ["run.container_version=nano-v3"])
    with pytest.raises(UserError, match="no mamba_moe quantization presets"):
        model(job, cfg, work, tmp_path / "out")
    inputs = sft_inputs(tmp_path)
    lora = inputs["model"] | {"metadata": {"format": "megatron", "peft": "lora"}}
    job, cfg, work = job_for(tmp_path, "nano3", "model-export", "default", inputs={"model": lora})
    with pytest.raises(UserError, match="LoRA adapters only"):
        model(job, cfg, work, tmp_path / "out")
    full = inputs["model"]
    job, cfg, work = job_for(tmp_path, "nano3", "model-merge-lora", "default",
                             inputs={"model": full})
    with pytest.raises(UserError, match="needs a LoRA checkpoint"):
        model(job, cfg, work, tmp_path / "out")


def test_import_stops_before_converting_a_checkpoint_that_lost_its_scaling_factor(tmp_path):
    from nemotron.backends.megatron import model

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(
        {k: v for k, v in NANO_HF.items() if k != "routed_scaling_factor"}))
    job, cfg, work = job_for(tmp_path, "nano3", "model-import", "default", [f"op.hf_path={hf}"])
    with pytest.raises(UserError) as err:
        model(job, cfg, work, tmp_path / "out")  # fails before importing megatron.bridge
    assert "moe_router_topk_scaling_factor" in err.value.message


def test_provider_fields_come_from_the_checkpoint_run_config(tmp_path):
    from nemotron.backends.megatron.convert import provider_fields

    ckpt = megatron_checkpoint_dir(tmp_path, 0)
    (ckpt / "iter_0000000" / "run_config.yaml").write_text(yaml.safe_dump(
        {"model": {"moe_router_topk_scaling_factor": 2.5, "num_moe_experts": 128}}))
    assert provider_fields(ckpt) == {"moe_router_topk_scaling_factor": 2.5,
                                     "num_moe_experts": 128}
    assert provider_fields(tmp_path / "none") is None


def test_a_failed_check_keeps_its_report_and_fails_the_stage(tmp_path):
    from nemotron.backends.megatron.convert import finish_report
    from nemotron.backends.megatron.versions import resolve_target
    from nemotron.lineage.kinds import validate_metadata

    target, _, _ = resolve_target("nano-v3")
    job, _, work = job_for(tmp_path, "nano3", "model-compare", "default")
    good = {"cosine": 0.999, "top1_match": True, "passed": True, "arch": []}
    meta = finish_report(job, target, work, "compare", good, "hf", "/ckpt")
    assert meta["results"]["compare"]["cosine"] == 0.999 and meta["primary"] == "compare/cosine"
    validate_metadata("eval-results", meta)
    bad = {"cosine": 0.42, "passed": False, "arch": []}
    with pytest.raises(UserError, match="cosine=0.42"):
        finish_report(job, target, work, "compare", bad, "hf", "/ckpt")
    assert json.loads((work / "report.json").read_text())["cosine"] == 0.42


# ------------------------------------------------------------------------- nemo_rl
def rl_inputs(tmp_path, hf_config=None):
    data = tmp_path / "rl"
    data.mkdir()
    for split in ("train", "validation"):
        (data / f"{split}.jsonl").write_text('{"responses_create_params": {"input": []}}\n')
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text(json.dumps(hf_config or NANO_HF))
    return {"data": {"kind": "rl-data", "path": str(data), "name": "x-rl-data",
                     "metadata": {"splits": {"train": "train.jsonl",
                                             "validation": "validation.jsonl"}}},
            "model": {"kind": "model", "path": str(policy), "name": "x-sft-model",
                      "metadata": {"format": "hf"}}}


def test_rl_writes_the_recipe_overlay_and_runs_the_nemo_gym_entry(tmp_path, monkeypatch):
    import nemotron.backends.nemo_rl as backend

    calls = []

    def fake_call(cmd, cwd):
        calls.append((cmd, cwd))
        (tmp_path / "out.partial/checkpoints/step_20/policy/weights").mkdir(parents=True)
        return 0

    monkeypatch.setenv("NEMOTRON_NEMO_RL_ROOT", "/opt/nemo-rl")
    monkeypatch.setattr(backend.subprocess, "call", fake_call)
    job, cfg, work = job_for(tmp_path, "nano3", "rl", "default", inputs=rl_inputs(tmp_path),
                             profile={"nodes": 4, "gpus_per_node": 8})
    meta = backend.rl(job, cfg, work, tmp_path / "out")
    (cmd, cwd), = calls
    assert cmd[1:] == ["/opt/nemo-rl/examples/nemo_gym/run_grpo_nemo_gym.py", "--config",
                       str(work / "grpo.yaml")] and cwd == "/opt/nemo-rl"
    written = yaml.safe_load((work / "grpo.yaml").read_text())
    assert written["defaults"] == "/opt/nemo-rl/examples/nemo_gym/grpo_nanov3.yaml"
    assert written["policy"]["model_name"] == str(tmp_path / "policy")
    assert written["data"]["train_jsonl_fpath"] == str(tmp_path / "rl/train.jsonl")
    assert written["cluster"] == {"num_nodes": 4, "gpus_per_node": 8}
    assert meta["step"] == 20 and meta["checkpoint"] == "checkpoints/step_20/policy/weights"
    from nemotron.lineage.kinds import validate_metadata

    validate_metadata("model", meta)


def test_rl_refuses_a_policy_whose_scaling_factor_drifted(tmp_path, monkeypatch):
    import nemotron.backends.nemo_rl as backend

    monkeypatch.setattr(backend.subprocess, "call", lambda *a, **k: pytest.fail("ran"))
    inputs = rl_inputs(tmp_path, NANO_HF | {"routed_scaling_factor": 1.0})
    job, cfg, work = job_for(tmp_path, "nano3", "rl", "default", inputs=inputs)
    with pytest.raises(UserError, match="routed_scaling_factor|topk_scaling"):
        backend.rl(job, cfg, work, tmp_path / "out")


def test_swe_agents_need_their_images(tmp_path, monkeypatch):
    import nemotron.backends.nemo_rl as backend

    monkeypatch.delenv("NEMOTRON_SIF_DIR", raising=False)
    job, cfg, work = job_for(tmp_path, "super3", "rl", "swe2",
                             inputs=rl_inputs(tmp_path, SUPER_HF))
    with pytest.raises(UserError) as err:
        backend.rl(job, cfg, work, tmp_path / "out")
    assert "NEMOTRON_SIF_DIR" in err.value.hint


def test_rl_needs_the_hf_source_of_a_megatron_policy(tmp_path):
    import nemotron.backends.nemo_rl as backend

    inputs = rl_inputs(tmp_path)
    megatron_checkpoint_dir(tmp_path / "mg", 5)
    inputs["model"] = {"kind": "model", "path": str(tmp_path / "mg"), "name": "x",
                       "metadata": {"format": "megatron", "checkpoint": "checkpoints"}}
    job, cfg, work = job_for(tmp_path, "nano3", "rl", "default", inputs=inputs)
    with pytest.raises(UserError, match="HF source"):
        backend.rl(job, cfg, work, tmp_path / "out")


# ------------------------------------------------------------------------- evaluator
RESULTS = {"results": {
    "tasks": {"hellaswag": {"metrics": {
        "acc": {"scores": {"acc": {"value": 0.61, "stats": {"stderr": 0.01}}}},
        "acc_norm": {"scores": {"acc_norm": {"value": 0.8, "stats": {}}}}}}},
    "groups": {"mmlu": {"metrics": {"acc": {"scores": {"micro": {"value": 0.7, "stats": {}}}}}}},
}}


def test_results_yml_becomes_task_metric_values():
    from nemotron.backends.evaluator.translate import parse_results

    assert parse_results(RESULTS) == {"hellaswag": {"acc": 0.61, "acc_norm": 0.8},
                                      "mmlu": {"acc_micro": 0.7}}


def test_eval_runs_the_launcher_against_an_endpoint_and_registers_scores(tmp_path, monkeypatch):
    import nemotron.backends.evaluator as backend
    from nemotron.lineage.kinds import validate_metadata

    seen = {}

    def fake_launch(config_file):
        seen.update(yaml.safe_load(config_file.read_text()))
        task_dir = tmp_path / "out.partial/launcher/inv1/hellaswag/artifacts"
        task_dir.mkdir(parents=True)
        (task_dir / "results.yml").write_text(yaml.safe_dump(RESULTS))
        return "inv1"

    monkeypatch.setattr(backend, "launch", fake_launch)
    monkeypatch.setattr(backend, "launcher_version", lambda: "0.1.50")
    monkeypatch.setattr(backend, "wait_done", lambda invocation, timeout_s: None)
    ckpt = megatron_checkpoint_dir(tmp_path / "m", 100)
    model = {"kind": "model", "path": str(ckpt.parent), "name": "nano3-rl-model",
             "metadata": {"format": "megatron", "checkpoint": "checkpoints"}}
    job, cfg, work = job_for(
        tmp_path, "nano3", "eval", "default",
        ["eval.deployment.type=external", "eval.deployment.url=http://h:9/v1/completions"],
        inputs={"model": model})
    meta = backend.eval(job, cfg, work, tmp_path / "out")
    assert seen["defaults"] == [{"execution": "local"}, {"deployment": "none"}, "_self_"]
    assert seen["target"]["api_endpoint"]["url"] == "http://h:9/v1/completions"
    assert meta["results"]["hellaswag"]["acc"] == 0.61
    assert meta["extra"]["checkpoint"] == str(ckpt / "iter_0000100")
    assert meta["extra"]["nemo_evaluator_launcher"] == "0.1.50"
    validate_metadata("eval-results", meta)


def test_shot_counts_in_task_names_must_agree():
    from nemotron.backends.evaluator.translate import deployment_settings, launcher_config

    cfg = load_config("nano3", "eval", "default",
                      ["eval.tasks=[{name: adlr_winogrande_5_shot, num_fewshot: 3}]"])[1]
    with pytest.raises(UserError, match="5-shot by name"):
        launcher_config(cfg, deployment_settings(cfg, "megatron"), "http://x", "/o")
    cfg = load_config("nano3", "eval", "default",
                      ["eval.tasks=[{name: gsm8k, num_fewshot: 8, limit: 50}]"])[1]
    document = launcher_config(cfg, deployment_settings(cfg, "megatron"), "http://x", "/o")
    assert document["evaluation"]["tasks"] == [{"name": "gsm8k", "nemo_evaluator_config": {
        "config": {"params": {"extra": {"num_fewshot": 8}, "limit_samples": 50}}}}]


def test_run_config_adapts_to_the_launcher_dialect():
    from nemotron.backends.evaluator.translate import for_launcher_version
    from tests.backends.cluster.test_cluster_golden import evaluator_spec

    document = evaluator_spec(load_config("nano3", "eval", "default")[1])["launcher_run"]
    assert for_launcher_version(document, "0.1.50") is document
    newer = for_launcher_version(document, "0.2.6")
    assert newer["evaluation"]["env_vars"] == {"NEMOTRON_EVAL": "lit:1"}
    assert "env_vars" not in document["evaluation"]  # the input is not modified


@pytest.mark.parametrize("family", ["nano3", "super3"])
def test_the_installed_launcher_accepts_the_run_config(family, tmp_path, monkeypatch):
    """Compose and dry-run the config with nemo-evaluator-launcher itself (scripts only)."""
    launcher = pytest.importorskip(
        "nemo_evaluator_launcher", reason="nemo-evaluator-launcher is not installed here "
        "(pip install nemo-evaluator-launcher to run this check)")
    del launcher
    import inspect
    from importlib.metadata import version

    from nemo_evaluator_launcher.api.functional import run_eval
    from nemo_evaluator_launcher.api.types import RunConfig

    from nemotron.backends.evaluator.translate import for_launcher_version
    from tests.backends.cluster.test_cluster_golden import evaluator_spec

    monkeypatch.setenv("HOME", str(tmp_path))
    document = evaluator_spec(load_config(family, "eval", "default")[1])["launcher_run"]
    document["execution"]["output_dir"] = str(tmp_path / "results")
    path = tmp_path / "launcher_run.yaml"
    path.write_text(yaml.safe_dump(for_launcher_version(
        document, version("nemo-evaluator-launcher"))))
    if "config" in inspect.signature(RunConfig.from_hydra).parameters:
        cfg = RunConfig.from_hydra(config=str(path))
    else:
        cfg = RunConfig.from_hydra(config_name=path.stem, config_dir=str(path.parent))
    assert [t.name for t in cfg.evaluation.tasks] == [
        "adlr_mmlu", "adlr_arc_challenge_llama_25_shot", "adlr_winogrande_5_shot", "hellaswag",
        "openbookqa"]
    assert run_eval(cfg, dry_run=True)
