"""NeMo-RL DPO and GenRM RLHF translations: what the pinned versions cannot do is refused before
submission, and every key written exists in the pinned recipe or loader."""

from __future__ import annotations

import pytest

from nemotron.errors import UserError
from tests.backends.cluster.cluster_helpers import load_config


def inputs():
    from nemotron.backends.nemo_rl.translate import RlInputs

    return RlInputs(out_dir="/out", model="/policy", train="/d/train.jsonl",
                    validation="/d/val.jsonl", wandb_project="p")


def dpo_spec(overrides: list[str]) -> dict:
    from nemotron.backends.nemo_rl.preference import to_nemo_rl_dpo

    return to_nemo_rl_dpo(load_config("nano3", "dpo", "default", overrides)[1], inputs())


def test_dpo_options_map_onto_nemo_rl_keys():
    spec = dpo_spec(["dpo.beta=0.2", "dpo.sft_loss_weight=0.01", "dpo.average_log_probs=true"])
    out = spec["overrides"]
    assert out["dpo.reference_policy_kl_penalty"] == 0.2
    assert out["dpo.sft_loss_weight"] == 0.01
    assert out["dpo.preference_average_log_probs"] is out["dpo.sft_average_log_probs"] is True
    assert out["data.dataset_name"] == "PreferenceDataset"
    assert (out["data.train_data_path"], out["data.val_data_path"]) == ("/d/train.jsonl",
                                                                      "/d/val.jsonl")
    assert out["policy.megatron_cfg.enabled"] and not out["policy.dtensor_cfg.enabled"]
    assert spec["entry"] == "examples/run_dpo.py"


@pytest.mark.parametrize("override,message", [
    ("dpo.loss=ipo", "dpo.loss=ipo: NeMo-RL nano-v3's DPO supports sigmoid only"),
    ("dpo.reference=sync", "dpo.reference=sync: NeMo-RL nano-v3's DPO supports initial only"),
    ("run.container_version=super-v3", "no DPO translation"),
])
def test_what_the_pinned_dpo_lacks_is_refused(override, message):
    with pytest.raises(UserError, match=message):
        dpo_spec([override])


def test_a_key_the_pinned_recipe_lacks_is_refused():
    from nemotron.backends.nemo_rl.translate import check_keys

    keys = ["dpo.max_num_steps", "policy.optimizer.kwargs.lr"]
    check_keys({"dpo.max_num_steps": 1, "policy.optimizer": None}, keys, "dpo.yaml")
    with pytest.raises(UserError, match="dpo.yaml has no key.s.: dpo.preference_loss"):
        check_keys({"dpo.preference_loss": "ipo"}, keys, "dpo.yaml")


def test_rlhf_needs_a_genrm_checkpoint():
    from nemotron.backends.nemo_rl import describe
    from nemotron.backends.nemo_rl.translate import GENRM_MODEL, needs_genrm, to_nemo_rl

    _, cfg = load_config("nano3", "rlhf", "default")
    assert needs_genrm(to_nemo_rl(cfg, inputs()))
    assert any("GenRM: no checkpoint set" in line for line in describe(cfg, "rl", "rlhf"))
    _, given = load_config("nano3", "rlhf", "default", ["grpo.genrm_model=/models/genrm"])
    spec = to_nemo_rl(given, inputs())
    assert spec["overrides"][GENRM_MODEL] == "/models/genrm" and not needs_genrm(spec)
    _, rlvr = load_config("nano3", "rl", "default")  # no GenRM in the RLVR recipe
    assert not needs_genrm(to_nemo_rl(rlvr, inputs()))
    with pytest.raises(UserError, match="has no key"):
        to_nemo_rl(load_config("nano3", "rl", "default", ["grpo.genrm_model=/g"])[1], inputs())
