"""Numeric verdicts for the model checks: every weight after a round trip, logits HF vs Megatron.

Pure over tensors (anything with ``.shape`` that torch can compare); torch is imported inside
the functions. Reports are plain dicts that become the check's artifact metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MAX_LISTED = 50


def compare_weights(
    exported: Iterable[tuple[str, Any]],
    reference: Callable[[str], Any | None],
    reference_names: Iterable[str] | None = None,
    atol: float = 1e-5,
) -> dict[str, Any]:
    """Compare each exported ``(name, tensor)`` with ``reference(name)``.

    A weight matches when the shapes agree and ``max |a - b| <= atol`` (in float32). Names the
    reference has but the export lacks are ``missing``; exported names without a reference are
    ``unexpected``. ``passed`` needs every weight matched and nothing missing or unexpected.
    """
    import torch

    seen: set[str] = set()
    mismatched: list[dict[str, Any]] = []
    unexpected: list[str] = []
    compared = matched = 0
    worst_name, worst = None, 0.0
    for name, tensor in exported:
        seen.add(name)
        original = reference(name)
        if original is None:
            unexpected.append(name)
            continue
        compared += 1
        if tuple(tensor.shape) != tuple(original.shape):
            mismatched.append({"name": name, "shape": list(tensor.shape),
                               "reference_shape": list(original.shape)})
            continue
        diff = (tensor.detach().to(torch.float32).cpu()
                - original.detach().to(torch.float32).cpu()).abs()
        max_diff = float(diff.max()) if diff.numel() else 0.0
        if max_diff > worst or worst_name is None:
            worst_name, worst = name, max(worst, max_diff)
        if max_diff <= atol:
            matched += 1
        else:
            mismatched.append({"name": name, "max_abs_diff": max_diff})
    missing = sorted(set(reference_names or ()) - seen)
    return {
        "compared": compared,
        "matched": matched,
        "mismatched": mismatched[:MAX_LISTED],
        "mismatched_count": len(mismatched),
        "missing": missing[:MAX_LISTED],
        "missing_count": len(missing),
        "unexpected": unexpected[:MAX_LISTED],
        "unexpected_count": len(unexpected),
        "max_abs_diff": worst,
        "worst": worst_name,
        "atol": atol,
        "passed": compared > 0 and not mismatched and not missing and not unexpected,
    }


def compare_logits(reference: Any, candidate: Any, min_cosine: float) -> dict[str, Any]:
    """Next-token logits of two models (1-D, same vocabulary after trimming padding)."""
    import torch

    ref = reference.detach().to(torch.float32).flatten().cpu()
    cand = candidate.detach().to(torch.float32).flatten().cpu()
    vocab = min(ref.numel(), cand.numel())  # Megatron pads the vocabulary
    ref, cand = ref[:vocab], cand[:vocab]
    cosine = float(torch.nn.functional.cosine_similarity(ref, cand, dim=0))
    top_ref = torch.topk(ref, k=min(5, vocab)).indices.tolist()
    top_cand = torch.topk(cand, k=min(5, vocab)).indices.tolist()
    return {
        "cosine": cosine,
        "max_abs_diff": float((ref - cand).abs().max()),
        "top1_match": top_ref[0] == top_cand[0],
        "top5_overlap": len(set(top_ref) & set(top_cand)) / len(top_ref),
        "reference_top1": top_ref[0],
        "candidate_top1": top_cand[0],
        "min_cosine": min_cosine,
        "passed": cosine >= min_cosine,
    }
