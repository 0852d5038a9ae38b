"""Known-harmless library notes, kept off the local stages' output unless asked for.

Every local stage is its own process, so a library's "warn once" note repeats in every stage
of a pipe: the mamba_ssm / causal_conv1d fallback notes (the reference PyTorch path is correct,
only slower), torch's "no CUDA runtime" note on CPU machines, lm-eval's notes about model
arguments it ignores when given a live model. ``silence_known_notes`` drops exactly those
messages (by logger and text, so anything new still shows) and the listed FutureWarnings.
``NEMOTRON_VERBOSE=1`` keeps them all. The stage's own progress lines are prints, never
touched here.
"""

from __future__ import annotations

import logging
import os
import warnings

# logger name -> message fragments that are known and harmless on this backend
KNOWN_NOTES: dict[str, tuple[str, ...]] = {
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
    "transformers.integrations.hub_kernels": (
        "is falling back to its reference PyTorch implementation",),
    "lm_eval.models.huggingface": (
        "`pretrained` model kwarg is not of type `str`",
        "Passed an already-initialized model through `pretrained`",
    ),
    "lm_eval.evaluator": ("model_args not specified", "specified through cli, these settings will"),
}
# (module regex, message regex) of FutureWarnings / UserWarnings from the libraries' own code
KNOWN_WARNINGS: tuple[tuple[str, str], ...] = (
    (r"(transformers|trl|torch)(\..*)?", r".*deprecated.*"),
    (r"(transformers|trl)(\..*)?", r".*will be removed.*"),
)


def verbose() -> bool:
    return os.environ.get("NEMOTRON_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


class _DropKnown(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def silence_known_notes() -> None:
    """Install the filters (idempotent); a no-op with ``NEMOTRON_VERBOSE=1``."""
    if verbose():
        return
    for name, fragments in KNOWN_NOTES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(fragments))
    for module, message in KNOWN_WARNINGS:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
