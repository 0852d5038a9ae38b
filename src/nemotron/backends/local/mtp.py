"""Multi-token prediction (MTP) for Nemotron 3 Super, which transformers does not build.

transformers' ``NemotronHConfig`` records ``num_nextn_predict_layers`` and
``mtp_layers_block_type`` but its model has no MTP modules and drops ``mtp.*`` weights on load.
For local pretraining we add the block ourselves, in the DeepSeek-V3 / Megatron form the
Nemotron 3 Super recipe uses: one block (``mtp_hybrid_override_pattern``, ``*E`` by default)
with shared weights, applied ``mtp_num_layers`` times. Pass k predicts token ``t + k + 1``::

    h_k = block(eh_proj([enorm(embed(x_{t+k})); hnorm(h_{k-1})]))
    loss_k = CE(lm_head(final_norm(h_k))_t, x_{t+k+1})

(the embedding and output head are the main model's). The MTP loss is
``mtp_loss_scaling_factor x mean_k loss_k``. Its weights are saved with the checkpoint under
``mtp.*``; inference ignores them, as with the released checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any


def build_mtp(model, arch):
    """An ``MTPHead`` for ``model`` (or None when the architecture has no MTP)."""
    if not arch.mtp_num_layers:
        return None
    import torch

    head = MTPHead(model.config, depth=arch.mtp_num_layers, scale=arch.mtp_loss_scaling_factor)
    with torch.no_grad():
        for _, param in head.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, model.config.initializer_range)
    return head


def _module_class():
    import torch
    from torch import nn
    from transformers.models.nemotron_h import modeling_nemotron_h as hf

    class _MTPHead(nn.Module):
        def __init__(self, config, depth: int, scale: float):
            super().__init__()
            block_config = copy.deepcopy(config)
            block_config.layers_block_type = list(config.mtp_layers_block_type)
            block_config._attn_implementation = "sdpa"  # causal without an explicit mask
            hidden = config.hidden_size
            eps = config.layer_norm_epsilon
            self.depth = depth
            self.scale = scale
            self.enorm = hf.NemotronHRMSNorm(hidden, eps=eps)
            self.hnorm = hf.NemotronHRMSNorm(hidden, eps=eps)
            self.eh_proj = nn.Linear(2 * hidden, hidden, bias=False)
            self.layers = nn.ModuleList(
                hf.NemotronHBlock(block_config, layer_idx=i)
                for i in range(len(block_config.layers_block_type))
            )
            self.final_norm = hf.NemotronHRMSNorm(hidden, eps=eps)

        def forward(self, hidden, input_ids, labels, loss_mask, embed, lm_head):
            """The scaled MTP loss (mean over passes) for one micro-batch."""
            import torch.nn.functional as F

            seq = input_ids.shape[1]
            losses = []
            state = hidden
            for k in range(1, self.depth + 1):
                if seq <= k:
                    break
                shifted_ids = torch.roll(input_ids, -k, dims=1)
                target = torch.roll(labels, -k, dims=1)
                mask = torch.roll(loss_mask, -k, dims=1).clone()
                mask[:, seq - k:] = 0
                mixed = self.eh_proj(torch.cat([self.enorm(embed(shifted_ids)),
                                                self.hnorm(state)], dim=-1))
                for layer in self.layers:
                    mixed = layer(mixed)
                state = mixed
                logits = lm_head(self.final_norm(mixed)).float()
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     reduction="none")
                weights = mask.reshape(-1).to(ce.dtype)
                losses.append((ce * weights).sum() / weights.sum().clamp(min=1.0))
            if not losses:
                return hidden.new_zeros(())
            return self.scale * torch.stack(losses).mean()

    return _MTPHead


def MTPHead(config, depth: int, scale: float):  # noqa: N802 - a class factory
    return _module_class()(config, depth, scale)


def mtp_state(head) -> dict[str, Any]:
    """The head's weights under ``mtp.`` (as stored in the checkpoint)."""
    return {f"mtp.{k}": v for k, v in head.state_dict().items()}


def load_mtp_state(head, tensors: dict[str, Any]) -> None:
    own = {k[len("mtp."):]: v for k, v in tensors.items() if k.startswith("mtp.")}
    if own:
        head.load_state_dict(own)
