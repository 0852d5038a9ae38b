"""Our eval config -> a served checkpoint and a nemo-evaluator-launcher run (pure, no I/O).

The eval stage serves the model on its own node (Ray in-framework deployment from the NeMo
container's Export-Deploy scripts: ``deploy_ray_inframework.py`` for Megatron checkpoints,
``deploy_ray_hf.py`` for Hugging Face ones, or an ``external`` URL), then asks
nemo-evaluator-launcher to evaluate that endpoint (``deployment: none``). ``eval.deployment``
holds the knobs:

    type: inframework | hf | external     (default: by checkpoint format)
    url: ...                              (external only)
    port: 1235, model_id: megatron_model, num_replicas: 1, timeout_s: 3600
    execution: local | slurm/default      (the launcher's executor config; local needs Docker)
    launcher: {...}                       (merged into the launcher config as it is)

Task names are the launcher's (``adlr_mmlu``, ``adlr_arc_challenge_llama_25_shot``, ...). A
task name that encodes its shots (``..._25_shot``) must agree with ``num_fewshot``.
"""

from __future__ import annotations

import re
from typing import Any

from nemotron.config.schema import StageConfig
from nemotron.errors import UserError

DEPLOY_SCRIPTS = "/opt/Export-Deploy/scripts/deploy/nlp"
DEFAULTS = {"port": 1235, "model_id": "megatron_model", "num_replicas": 1, "timeout_s": 3600,
            "execution": "local", "health_path": "/v1/health",
            "endpoint_path": "/v1/completions/"}
SHOTS = re.compile(r"_(\d+)_shot$")


def deployment_settings(cfg: StageConfig, checkpoint_format: str) -> dict[str, Any]:
    settings = {**DEFAULTS, **(cfg.eval.deployment or {})}
    settings.setdefault("type", "inframework" if checkpoint_format == "megatron" else "hf")
    if settings["type"] not in ("inframework", "hf", "external"):
        raise UserError(f"eval.deployment.type={settings['type']!r}: use inframework, hf or "
                        "external")
    if settings["type"] == "external" and not settings.get("url"):
        raise UserError("eval.deployment.type=external needs eval.deployment.url")
    return settings


def deploy_command(cfg: StageConfig, settings: dict[str, Any], checkpoint: str, gpus: int,
                   python: str = "python") -> list[str] | None:
    """The server command for this node (None for an external endpoint)."""
    par = cfg.parallel
    common = ["--model_id", str(settings["model_id"]), "--host", "0.0.0.0",
              "--port", str(settings["port"]), "--num_gpus", str(gpus),
              "--num_replicas", str(settings["num_replicas"])]
    if settings["type"] == "external":
        return None
    if settings["type"] == "inframework":
        return [python, f"{DEPLOY_SCRIPTS}/deploy_ray_inframework.py",
                "--megatron_checkpoint", checkpoint, *common,
                "--tensor_model_parallel_size", str(par.tp),
                "--pipeline_model_parallel_size", str(par.pp),
                "--expert_model_parallel_size", str(par.ep)]
    return [python, f"{DEPLOY_SCRIPTS}/deploy_ray_hf.py", "--model_path", checkpoint, *common,
            "--use_vllm_backend"]


def endpoint_url(settings: dict[str, Any], host: str = "127.0.0.1") -> str:
    if settings["type"] == "external":
        return str(settings["url"])
    return f"http://{host}:{settings['port']}{settings['endpoint_path']}"


def launcher_config(cfg: StageConfig, settings: dict[str, Any], url: str, output_dir: str
                    ) -> dict[str, Any]:
    """The launcher run config as a Hydra document (written to a YAML file on the node).

    A file, not ``dict_overrides``: the launcher's default config holds ``evaluation: []``,
    which a mapping cannot be merged into; Hydra composition with ``_self_`` replaces it.
    """
    ev = cfg.eval
    if not ev.tasks:
        raise UserError("eval.tasks is empty")
    tasks = []
    for task in ev.tasks:
        params: dict[str, Any] = {}
        shots = SHOTS.search(task.name)
        if task.num_fewshot is not None:
            if shots and int(shots.group(1)) != task.num_fewshot:
                raise UserError(f"eval task {task.name} is {shots.group(1)}-shot by name but "
                                f"num_fewshot={task.num_fewshot}",
                                hint="pick the launcher task with the right shot count")
            if not shots:
                params["extra"] = {"num_fewshot": task.num_fewshot}
        if task.limit:
            params["limit_samples"] = task.limit
        entry: dict[str, Any] = {"name": task.name}
        if params:
            entry["nemo_evaluator_config"] = {"config": {"params": params}}
        tasks.append(entry)
    document: dict[str, Any] = {
        "defaults": [{"execution": settings["execution"]}, {"deployment": "none"}, "_self_"],
        "execution": {"output_dir": output_dir},
        "target": {"api_endpoint": {"url": url, "model_id": settings["model_id"]}},
        "evaluation": {
            "nemo_evaluator_config": {"config": {"params": {
                "parallelism": ev.batch_size, "max_new_tokens": ev.max_new_tokens,
                "max_retries": 5, "request_timeout": 6000}}},
            "tasks": tasks,
        },
    }
    merge(document, settings.get("launcher") or {})
    return document


def for_launcher_version(document: dict[str, Any], version: str) -> dict[str, Any]:
    """Adapt the run config to the installed launcher's dialect.

    From 0.2 on, env var values need a ``host:`` / ``lit:`` prefix, and the local executor of
    0.2.x fails when no env var is set at all (an unbound variable in its script builder), so
    one literal marker variable is added there.
    """
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < (0, 2):
        return document
    adapted = {**document, "evaluation": {**document["evaluation"]}}
    env = dict(adapted["evaluation"].get("env_vars") or {})
    env.setdefault("NEMOTRON_EVAL", "lit:1")
    adapted["evaluation"]["env_vars"] = env
    return adapted


def merge(into: dict[str, Any], top: dict[str, Any]) -> None:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def parse_results(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A nemo-evaluator results.yml -> {task: {metric: value}} (tasks and groups)."""
    table = data.get("results", data) if isinstance(data, dict) else {}
    out: dict[str, dict[str, float]] = {}
    for section in ("tasks", "groups"):
        for name, entry in (table.get(section) or {}).items():
            metrics = _metrics(entry)
            if metrics:
                out.setdefault(name, {}).update(metrics)
    return out


def _metrics(entry: dict[str, Any]) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric, result in (entry.get("metrics") or {}).items():
        for score, info in ((result or {}).get("scores") or {}).items():
            value = info.get("value") if isinstance(info, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                key = metric if score == metric else f"{metric}_{score}"
                found[key] = float(value)
    return found
