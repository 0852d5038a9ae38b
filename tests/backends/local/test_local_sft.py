"""Local SFT on packed Parquet: unpacked per sequence, loss on assistant tokens only; LoRA with a
merge that gives a plain HF checkpoint."""

from __future__ import annotations

import json

from conftest import chat_sequence, make_job, sft_config


def test_sft_loss_counts_exactly_the_masked_tokens(tokenizer_dir, base_model):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from nemotron.backends.local.loop import lm_loss_sum
    from nemotron.backends.local.modeling import load_causal_lm
    from nemotron.backends.local.sft_data import Sequence, to_micro_batches

    pairs = [chat_sequence(tokenizer_dir, a, b) for a, b in ((1, 2), (7, 8), (3, 9))]
    seqs = [Sequence(np.array(ids), np.array(mask, dtype=np.uint8)) for ids, mask in pairs]
    micros = to_micro_batches(seqs, token_budget=10_000, pad_id=3)
    assert len(micros) == 1
    (micro,) = micros
    # the shifted mask turns on one position before the answer and is 0 at the last token
    answers = [len(mask) - 1 - mask.index(1) for _, mask in pairs]
    assert float(micro.loss_mask.sum()) == sum(sum(m) for _, m in pairs) == sum(answers)

    model = load_causal_lm(base_model)
    model.eval()
    with torch.no_grad():
        total, _ = lm_loss_sum(model, micro)
        expected = 0.0
        for ids, mask in pairs:  # each sequence alone, no padding, only its answer tokens
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            targets = torch.tensor(ids[1:])
            losses = F.cross_entropy(logits[:-1], targets, reduction="none")
            expected += float((losses * torch.tensor(mask[:-1], dtype=torch.float32)).sum())
    assert abs(float(total) - expected) < 1e-3 * max(1.0, expected)

    # targets where the mask is 0 (prompt tokens, padding) do not count at all
    scrambled = micro.labels.clone()
    scrambled[micro.loss_mask == 0] = 5
    with torch.no_grad():
        again, _ = lm_loss_sum(model, type(micro)(micro.input_ids, scrambled, micro.loss_mask))
    assert abs(float(again) - float(total)) < 1e-4


def test_full_sft_trains_on_unpacked_sequences(tmp_path, sft_data, base_model):
    from nemotron.backends.local import sft
    from nemotron.backends.local.metrics import read_metrics

    job, cfg, work, final = make_job(tmp_path, "sft", sft_config(),
                                     {"data": ("sft-data", sft_data),
                                      "model": ("model", base_model)})
    meta = sft(job, cfg, work, final)
    assert meta["stage"] == "sft" and meta["format"] == "hf" and meta.get("peft") is None
    assert meta["extra"]["final_loss"] < meta["extra"]["initial_loss"] - 1.0
    assert (work / "model.safetensors").is_file() and (work / "chat_template.jinja").is_file()
    assert [r["step"] for r in read_metrics(work) if r["split"] == "train"] == [1, 3, 6, 9, 12]


def test_lora_sft_and_merge_give_the_same_outputs(tmp_path, sft_data, base_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, NemotronHForCausalLM

    from nemotron.backends.local import model as model_entry
    from nemotron.backends.local import sft

    job, cfg, work, final = make_job(tmp_path / "lora", "sft", sft_config(peft=True),
                                     {"data": ("sft-data", sft_data),
                                      "model": ("model", base_model)})
    meta = sft(job, cfg, work, final)
    assert meta["peft"] == "lora" and meta["extra"]["merged"] == "merged"
    assert meta["extra"]["final_loss"] < meta["extra"]["initial_loss"]
    adapter = json.loads((work / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base_model.resolve())
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "in_proj"} <= set(
        adapter["target_modules"])
    assert not (work / "model.safetensors").exists()  # an adapter artifact holds no base weights

    # the model entry's merge-lora writes a plain checkpoint from the adapter artifact
    mjob, mcfg, mwork, mfinal = make_job(tmp_path / "merge", "model",
                                         {"run": {"backend": "local"}, "op": {}},
                                         {"model": ("model", work)})
    info = mjob.job.model_copy(update={"stage": "model-merge-lora"})
    mjob = mjob.model_copy(update={"job": info})
    mmeta = model_entry(mjob, mcfg, mwork, mfinal)
    assert mmeta["stage"] == "merge-lora" and mmeta.get("peft") is None
    assert not (mwork / "adapter_config.json").exists()

    ids = torch.randint(0, 400, (2, 24))
    base = AutoModelForCausalLM.from_pretrained(str(base_model))
    with_adapter = PeftModel.from_pretrained(base, str(work)).eval()
    for folder in (work / "merged", mwork):
        merged = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        assert type(merged) is NemotronHForCausalLM
        with torch.no_grad():
            expected = with_adapter(input_ids=ids, use_cache=False).logits
            got = merged(input_ids=ids, use_cache=False).logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_model_roundtrip_and_compare_checks(tmp_path, base_model):
    from nemotron.backends.local import model as model_entry
    from nemotron.lineage import validate_metadata

    for op, metric in (("roundtrip", "max_abs_diff"), ("compare", "cosine")):
        job, cfg, work, final = make_job(tmp_path / op, "model",
                                         {"run": {"backend": "local"}, "op": {"atol": 0.0}},
                                         {"model": ("model", base_model)})
        job = job.model_copy(update={"job": job.job.model_copy(update={"stage": f"model-{op}"})})
        meta = model_entry(job, cfg, work, final)
        validate_metadata("eval-results", meta)
        value = meta["results"][op][metric]
        assert value == (0.0 if op == "roundtrip" else 1.0) or abs(value - 1.0) < 1e-6
        assert not (work / "resaved").exists()
