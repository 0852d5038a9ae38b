"""MoE load balancing that transformers leaves out: the aux-loss-free expert-bias update and the
small sequence-level aux loss (REFERENCE section 1).

HF's ``NemotronHTopkRouter`` adds ``e_score_correction_bias`` to the sigmoid scores when it picks
the top-k experts, but nothing ever changes that bias. ``ExpertBalancer`` hooks every router:

- during training forwards it counts how many tokens each expert received (summed over all
  micro-batches of an optimizer step);
- after the step, ``update()`` sums the loads over the data-parallel ranks (``sync``, so every
  rank applies the same update and the biases stay equal) and applies the DeepSeek rule per
  MoE layer,
  ``bias += rate * sign(mean_load - load)``, in place and without autograd;
- when ``aux_coeff > 0`` it also builds the sequence-level balance loss
  ``coeff * mean_seq sum_e f_e * P_e`` with ``f_e = E / (K T) * tokens of the sequence routed
  to e`` and ``P_e`` the mean normalised router score of e over the sequence; the trainer adds
  ``pop_aux_loss()`` to the language-model loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def routers(*models) -> list[tuple[str, Any]]:
    """(name, module) of every MoE router in the models (modules with an expert bias)."""
    return [
        (name, module)
        for model in models
        if model is not None
        for name, module in model.named_modules()
        if hasattr(module, "e_score_correction_bias") and hasattr(module, "top_k")
    ]


@dataclass
class ExpertBalancer:
    model: Any  # a module, or a list of modules (the model and its MTP head)
    rate: float = 1e-3
    update_bias: bool = True
    aux_coeff: float = 0.0
    loads: list[Any] = field(default_factory=list)
    _aux: list[Any] = field(default_factory=list)
    _hooks: list[Any] = field(default_factory=list)
    _routers: list[tuple[str, Any]] = field(default_factory=list)
    token_mask: Any = None  # optional [B, T] bool mask of real tokens for the next forward
    sync: Any = None  # optional in-place sum of the load tensors over data-parallel ranks

    def __post_init__(self) -> None:
        import torch

        models = self.model if isinstance(self.model, (list, tuple)) else [self.model]
        self._routers = routers(*models)
        self.loads = [torch.zeros(m.num_experts, dtype=torch.float64) for _, m in self._routers]
        for index, (_, module) in enumerate(self._routers):
            self._hooks.append(module.register_forward_hook(self._hook(index)))

    @property
    def active(self) -> bool:
        return bool(self._routers)

    def _hook(self, index: int):
        import torch

        def on_forward(module, inputs, output) -> None:
            if not (module.training and torch.is_grad_enabled()):
                return  # generation and evaluation do not count
            router_logits, _, topk_idx = output
            hidden = inputs[0]
            num_experts = module.num_experts
            mask = self.token_mask
            flat_idx = topk_idx
            if mask is not None and mask.numel() == topk_idx.shape[0]:
                flat_idx = topk_idx[mask.reshape(-1).to(topk_idx.device)]
            with torch.no_grad():
                counts = torch.bincount(flat_idx.reshape(-1), minlength=num_experts)
                self.loads[index] += counts.to(torch.float64).cpu()
            if self.aux_coeff > 0 and hidden.dim() == 3:
                self._aux.append(self._seq_aux_loss(router_logits, topk_idx, hidden.shape[:2],
                                                    module.top_k, num_experts))

        return on_forward

    def _seq_aux_loss(self, router_logits, topk_idx, batch_shape, top_k: int, num_experts: int):
        import torch

        batch, seq = int(batch_shape[0]), int(batch_shape[1])
        scores = router_logits.sigmoid().view(batch, seq, num_experts)
        probs = scores / (scores.sum(dim=-1, keepdim=True) + 1e-20)
        mean_prob = probs.mean(dim=1)  # [B, E]
        with torch.no_grad():
            picked = torch.zeros(batch * seq, num_experts, device=scores.device)
            picked.scatter_(1, topk_idx, 1.0)
            fraction = picked.view(batch, seq, num_experts).sum(dim=1) * (
                num_experts / (top_k * seq)
            )
        return self.aux_coeff * (fraction * mean_prob).sum(dim=-1).mean()

    def pop_aux_loss(self):
        """The aux losses of the forwards since the last call (summed over layers), or None."""
        if not self._aux:
            return None
        total = sum(self._aux[1:], self._aux[0])
        self._aux.clear()
        return total

    def imbalance(self) -> float | None:
        """max load / mean load over experts, averaged over MoE layers (1.0 = perfectly even)."""
        values = [float(load.max() / load.mean()) for load in self.loads if load.sum() > 0]
        return sum(values) / len(values) if values else None

    def update(self) -> float | None:
        """Apply the bias update from this step's loads, reset them; returns the imbalance."""
        import torch

        if self.sync is not None:
            self.sync(self.loads)
        imbalance = self.imbalance()
        if self.update_bias and self.rate > 0:
            with torch.no_grad():
                for load, (_, module) in zip(self.loads, self._routers, strict=True):
                    if load.sum() <= 0:
                        continue
                    bias = module.e_score_correction_bias
                    direction = torch.sign(load.mean() - load).to(bias.device, bias.dtype)
                    bias.add_(self.rate * direction)
        self.reset()
        return imbalance

    def reset(self) -> None:
        for load in self.loads:
            load.zero_()
        self._aux.clear()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def make_balancer(model, cfg, extra=None) -> ExpertBalancer | None:
    """The balancer the config asks for (None when the model has no MoE layers)."""
    arch = cfg.model
    if arch is None or not routers(model, extra):
        return None
    enabled = arch.moe_router_enable_expert_bias and cfg.moe.expert_bias_update
    coeff = arch.moe_aux_loss_coeff if arch.moe_router_load_balancing_type != "none" else 0.0
    target = [model, extra] if extra is not None else model
    return ExpertBalancer(target, rate=arch.moe_router_bias_update_rate, update_bias=enabled,
                          aux_coeff=coeff)
