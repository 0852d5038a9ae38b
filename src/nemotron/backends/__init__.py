"""Training backends: ``local`` (HF transformers/TRL on CPU or one GPU), ``megatron``
(Megatron-Bridge), ``nemo_rl`` (NeMo-RL GRPO on Ray), ``evaluator`` (NeMo Evaluator).

A backend is a module ``nemotron.backends.<name>`` with one function per stage entry it
supports: ``pretrain``, ``sft``, ``rl``, ``dpo``, ``eval``, ``model``; each takes
``(job, cfg, work_dir, final_dir)`` and returns the output artifact's metadata dict.
"""

from __future__ import annotations

import importlib

from nemotron.errors import UserError


def stage_function(backend: str, entry: str):
    """The backend's function for a stage entry, or a UserError saying it is not available."""
    try:
        module = importlib.import_module(f"nemotron.backends.{backend}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("nemotron.backends"):
            raise UserError(
                f"the '{backend}' backend is not available in this version of nemotron",
                hint="use a config with run.backend=local (e.g. -c tiny) or upgrade",
            ) from None
        raise UserError(
            f"the '{backend}' backend needs the Python package '{exc.name}', which is not "
            "installed here",
            hint="local backend: uv sync --extra local; cluster backends run in NeMo containers",
        ) from None
    fn = getattr(module, entry, None)
    if fn is None:
        raise UserError(
            f"the '{backend}' backend does not run the '{entry}' stage yet",
            hint="pick another backend with run.backend=...",
        )
    return fn
