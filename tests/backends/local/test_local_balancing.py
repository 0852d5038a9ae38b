"""Aux-loss-free balancing: the expert-bias update makes expert loads measurably more even."""

from __future__ import annotations

from conftest import TINY_ARCH, make_job, pretrain_config


def _imbalance(tmp_path, pretrain_data, update: bool) -> tuple[list[float], dict]:
    from safetensors.torch import load_file

    from nemotron.backends.local import pretrain
    from nemotron.backends.local.metrics import read_metrics

    config = pretrain_config(train_iters=40, log_interval=1)
    config["model"] = {**TINY_ARCH, "num_moe_experts": 8, "moe_router_topk": 2,
                       "moe_router_bias_update_rate": 0.01, "moe_aux_loss_coeff": 0.0}
    config["moe"] = {"expert_bias_update": update}
    job, cfg, work, final = make_job(tmp_path / str(update), "pretrain", config,
                                     {"data": ("pretrain-data", pretrain_data)})
    pretrain(job, cfg, work, final)
    values = [r["moe_imbalance"] for r in read_metrics(work) if r["split"] == "train"]
    return values, load_file(str(work / "model.safetensors"))


def test_expert_bias_update_evens_the_load(tmp_path, pretrain_data):
    with_update, weights_on = _imbalance(tmp_path, pretrain_data, True)
    without, weights_off = _imbalance(tmp_path, pretrain_data, False)
    assert len(with_update) == len(without) == 40
    assert with_update[0] == without[0]  # same seed, same data: the first step is identical
    late_on = sum(with_update[-15:]) / 15
    late_off = sum(without[-15:]) / 15
    print(f"max/mean expert load over the last 15 steps: {late_on:.3f} with the bias update, "
          f"{late_off:.3f} without")
    assert late_on < late_off - 0.1, (late_on, late_off)
    bias_keys = [k for k in weights_on if k.endswith("e_score_correction_bias")]
    assert bias_keys
    assert all(float(weights_off[k].abs().max()) == 0.0 for k in bias_keys)
    assert all(float(weights_on[k].abs().max()) > 0.0 for k in bias_keys)


def test_bias_update_rule_and_seq_aux_loss():
    """bias += rate * sign(mean - load), no gradient into it; the aux loss has gradient."""
    import torch

    from nemotron.backends.local.balancing import ExpertBalancer
    from nemotron.backends.local.modeling import build_model
    from nemotron.config.schema import ModelArch

    model = build_model(ModelArch(**TINY_ARCH), seed=0)
    balancer = ExpertBalancer(model, rate=0.5, update_bias=True, aux_coeff=1e-2)
    model.train()
    ids = torch.randint(0, 400, (2, 16))
    out = model(input_ids=ids, use_cache=False)
    aux = balancer.pop_aux_loss()
    assert aux is not None and aux.requires_grad and float(aux) > 0
    (out.logits.mean() + aux).backward()
    ((_, router),) = [(n, m) for n, m in model.named_modules() if hasattr(m, "top_k")]
    assert router.e_score_correction_bias.grad is None
    assert router.weight.grad is not None
    load = balancer.loads[0].clone()
    assert float(load.sum()) == 2 * 16 * 2  # tokens x top-k
    balancer.update()
    expected = 0.5 * torch.sign(load.mean() - load).float()
    torch.testing.assert_close(router.e_score_correction_bias, expected)
    assert float(balancer.loads[0].sum()) == 0  # reset for the next step
    with torch.no_grad():  # evaluation forwards are not counted
        model(input_ids=ids, use_cache=False)
    assert float(balancer.loads[0].sum()) == 0
