"""Local evaluation: lm-eval's HF model (``HFLM``) on task YAML files shipped in
``configs/eval/`` with their JSONL data, offline.

Every model input of the job is evaluated on every task, side by side: the stage's ``model``
slot and, when given (a pipe fills them), ``base`` (the pretrained model) and ``sft``. Each is
labelled with the stage that produced it (``pretrain``, ``sft``, ``rl``). Each
``cfg.eval.tasks`` entry names a task and its YAML (``path``; a ``configs/...`` path is
resolved against ``nemotron.recipes.configs_root()``, default ``configs/eval/<name>.yaml``).
The YAML's ``data_files`` are made absolute (relative to the YAML) in a copy under the work
folder, so lm-eval never depends on the working directory or the hub. Models whose tokenizer
has a chat template are evaluated through it (``apply_chat_template``), as they were trained.

A task whose YAML says ``output_type: preference_margin`` is ours, not lm-eval's: its
``data_files.test`` holds preference pairs (NeMo-RL rows, as ``data prep dpo`` writes them) and
it reports the mean log p(chosen) - log p(rejected) (``margin``) and ``pair_accuracy``.

Output: ``results.json`` ({"results": {task: {metric: value}} of the ``model`` input,
"models": {label: {task: {metric: value}}}, ...}), per-model, per-task sample files
(``samples_<task>.jsonl`` for the ``model`` input, ``<label>/samples_<task>.jsonl`` for the
others) and the eval-results metadata (``results``, ``models``,
``primary``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

RESULTS = "results.json"
MODEL_SLOTS = ("base", "sft", "rl", "model")  # the table's column order


def task_yaml_path(name: str, path: str | None) -> Path:
    from nemotron.recipes import configs_root

    raw = path or f"configs/eval/{name}.yaml"
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        parts = candidate.parts
        if parts and parts[0] == "configs":
            candidate = configs_root().joinpath(*parts[1:])
        elif not candidate.exists():
            candidate = configs_root() / candidate
    if not candidate.is_file():
        raise UserError(f"eval task {name}: no task file {raw} (looked at {candidate})",
                        hint="tasks live in configs/eval/<name>.yaml; set eval.tasks[].path")
    return candidate


def task_fingerprint(cfg) -> str | None:
    """A hash of the task files and their data (what the results depend on beyond the config),
    for the planner's identity; standard library and pyyaml only."""
    import hashlib

    import yaml

    if cfg.eval is None:
        return None
    digest = hashlib.sha256()
    for task in cfg.eval.tasks:
        try:
            source = task_yaml_path(task.name, task.path)
        except UserError:
            digest.update(f"missing:{task.name}".encode())
            continue
        digest.update(source.read_bytes())
        files = ((yaml.safe_load(source.read_text()) or {}).get("dataset_kwargs") or {}).get(
            "data_files") or {}
        for value in (files.values() if isinstance(files, dict) else [files]):
            for item in value if isinstance(value, list) else [value]:
                path = Path(item) if Path(item).is_absolute() else source.parent / item
                digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()


def localized_task(name: str, source: Path, dest_dir: Path) -> Path:
    """Copy a task YAML with its data files made absolute; the task name must match."""
    import yaml

    spec = yaml.safe_load(source.read_text()) or {}
    if spec.get("task") != name:
        raise UserError(f"{source} defines task {spec.get('task')!r}, not {name!r}",
                        hint="make eval.tasks[].name match the task: key of the YAML")
    files = (spec.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        fixed = {}
        for split, value in files.items():
            items = value if isinstance(value, list) else [value]
            paths = []
            for item in items:
                path = Path(item) if Path(item).is_absolute() else source.parent / item
                if not path.is_file():
                    raise UserError(f"eval task {name}: data file {path} does not exist")
                paths.append(str(path.resolve()))
            fixed[split] = paths if isinstance(value, list) else paths[0]
        spec["dataset_kwargs"]["data_files"] = fixed
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"{name}.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return out


def flatten(task_results: dict[str, Any]) -> dict[str, float]:
    """lm-eval's ``{"acc,none": 0.5, "acc_stderr,none": 0.1, "alias": ...}`` ->
    ``{"acc": 0.5, "acc_stderr": 0.1}`` (``metric_filter`` when a filter other than none)."""
    out: dict[str, float] = {}
    for key, value in task_results.items():
        if "," not in key or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric, _, filt = key.partition(",")
        out[metric if filt in ("none", "boxed", "") else f"{metric}_{filt}"] = float(value)
    return out


def run(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    import datasets
    from lm_eval.tasks import TaskManager

    from nemotron.backends.local import modeling
    from nemotron.backends.local.inputs import input_ref

    ev = cfg.eval
    if ev is None or not ev.tasks:
        raise UserError("the eval stage needs eval.tasks", hint="start from -c tiny")
    if ev.harness != "lm_eval":
        raise UserError(f"the local backend runs lm-eval, not {ev.harness}",
                        hint="eval.harness=lm_eval, or run.backend=evaluator on a cluster")
    device = modeling.setup_torch(cfg.run.env.cpus_per_task)
    models = model_inputs(job)
    tasks_dir = work_dir / "tasks"
    margin_tasks = {}
    for task in ev.tasks:
        local = localized_task(task.name, task_yaml_path(task.name, task.path), tasks_dir)
        if is_margin_task(local):
            margin_tasks[task.name] = local
    datasets.disable_progress_bars()
    manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    by_model: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    chats: dict[str, bool] = {}
    primary_label = models[-1][0]
    for label, model_dir in models:  # samples of the model input on top, others per label
        table, counts, chats[label] = _evaluate_model(
            label, model_dir, cfg, manager, device,
            work_dir if label == primary_label else work_dir / label, margin_tasks)
        by_model[label] = table
    table = by_model[primary_label]
    primary_task = ev.tasks[0].name
    metric = next((m for m in table[primary_task] if not m.endswith("_stderr")), None)
    refs = {label: input_ref(job, slot) for slot, label in _labels(job).items()}
    document = {"results": table, "models": by_model, "order": list(by_model),
                "samples": counts, "model": input_ref(job, "model"), "inputs": refs,
                "chat_template": chats, "harness": "lm_eval"}
    (work_dir / RESULTS).write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(by_model), flush=True)
    return {
        "results": table,
        "models": by_model,
        "primary": f"{primary_task}/{metric}" if metric else None,
        "extra": {"model": input_ref(job, "model"), "inputs": refs, "samples": counts,
                  "harness": "lm_eval", "results_file": RESULTS, "chat_template": chats,
                  "versions": modeling.library_versions()},
    }


def _labels(job) -> dict[str, str]:
    """slot -> column label: the stage that made the model (from its metadata), else the slot;
    the ``model`` slot comes last."""
    from nemotron.backends.local.inputs import input_metadata

    labels: dict[str, str] = {}
    for slot in MODEL_SLOTS:
        ref = job.inputs.get(slot)
        if ref is None or not ref.path:
            continue
        label = str(input_metadata(job, slot).get("stage") or slot)
        while label in labels.values():
            label = f"{label}:{slot}"
        labels[slot] = label
    return labels


def model_inputs(job) -> list[tuple[str, Path]]:
    """(label, model folder) of every model input, in table order (the ``model`` slot last)."""
    from nemotron.backends.local import modeling
    from nemotron.backends.local.inputs import input_path

    out = []
    for slot, label in _labels(job).items():
        out.append((label, modeling.check_model_folder(input_path(job, slot, "a model"))))
    if not out or "model" not in _labels(job):
        input_path(job, "model", "a model to evaluate")  # raises the usual error
    return out


def _evaluate_model(label: str, model_dir: Path, cfg, manager, device, samples_dir: Path,
                    margin_tasks: dict[str, Path]):
    """lm-eval (or our margin task) of one model on every task: ({task: {metric: value}},
    {task: n}, chat?)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from nemotron.backends.local import modeling
    from nemotron.backends.local.inputs import tokenizer_dir_of

    ev = cfg.eval
    tok_dir = tokenizer_dir_of(model_dir) or tokenizer_dir_of(model_dir / "merged")
    if tok_dir is None:
        raise UserError(f"the model {model_dir} carries no tokenizer",
                        hint="evaluate a model made by the local stages (they copy it)")
    tokenizer = modeling.load_tokenizer(tok_dir)
    model = modeling.load_causal_lm(model_dir, device=device).eval()
    chat = bool(getattr(tokenizer, "chat_template", None))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=ev.batch_size,
              device=str(device), think_end_token="</think>" if chat else None)
    table: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    samples_dir.mkdir(parents=True, exist_ok=True)
    for task in ev.tasks:
        if task.name in margin_tasks and not chat:
            print(f"[eval] {label}: {task.name} skipped (a preference margin is scored on "
                  "chats; this model has no chat template)", flush=True)
            continue
        if task.name in margin_tasks:
            table[task.name], counts[task.name] = _margin_task(
                model, tokenizer, margin_tasks[task.name], task.limit,
                samples_dir / f"samples_{task.name}.jsonl")
            continue
        print(f"[eval] {label}: {task.name} on {model_dir.name}"
              f"{' (chat template)' if chat else ' (plain text)'}", flush=True)
        out = simple_evaluate(
            model=lm, tasks=[task.name], task_manager=manager, num_fewshot=task.num_fewshot,
            limit=task.limit, apply_chat_template=chat, log_samples=True,
            gen_kwargs={"max_gen_toks": ev.max_new_tokens}, random_seed=cfg.run.seed,
            numpy_random_seed=cfg.run.seed, torch_random_seed=cfg.run.seed,
            fewshot_random_seed=cfg.run.seed,
            bootstrap_iters=100, verbosity="WARNING",  # mean metrics: analytic stderr
        )
        if out is None:
            raise RuntimeError(f"lm-eval returned no results for {task.name}")
        table[task.name] = flatten(out["results"].get(task.name, {}))
        samples = out.get("samples", {}).get(task.name, [])
        counts[task.name] = len(samples)
        _write_samples(samples_dir / f"samples_{task.name}.jsonl", samples)
    return table, counts, chat


def is_margin_task(local_yaml: Path) -> bool:
    import yaml

    return (yaml.safe_load(local_yaml.read_text()) or {}).get("output_type") == \
        "preference_margin"


def _margin_task(model, tokenizer, local_yaml: Path, limit: int | None, samples: Path
                 ) -> tuple[dict[str, float], int]:
    """Our preference_margin task: the held-out log-prob margin of chosen over rejected."""
    import yaml

    from nemotron.backends.local import preference

    spec = yaml.safe_load(local_yaml.read_text())
    files = (spec.get("dataset_kwargs") or {}).get("data_files") or {}
    if "test" not in files:
        raise UserError(f"{local_yaml.name}: a preference_margin task needs "
                        "dataset_kwargs.data_files.test (preference pairs)")
    pairs = preference.read_pairs(Path(files["test"]))[:limit]
    print(f"[eval] {spec['task']}: log-prob margin of chosen over rejected on {len(pairs)} "
          "pairs", flush=True)
    values = preference.margins(model, tokenizer, pairs)
    samples.write_text("".join(json.dumps({"doc_id": i, "margin": v}) + "\n"
                               for i, v in enumerate(values)))
    return preference.summary(values), len(values)


def _write_samples(path: Path, samples: list[dict[str, Any]]) -> None:
    lines = []
    for sample in samples:
        doc = sample.get("doc", {})
        lines.append(json.dumps({
            "doc_id": sample.get("doc_id"), "question": doc.get("question"),
            "target": sample.get("target"),
            "response": _first(sample.get("filtered_resps")),
            "raw": _first(sample.get("resps")),
            **{k: v for k, v in sample.items() if k in ("exact_match", "acc", "acc_norm")},
        }, default=str))
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def _first(value):
    while isinstance(value, list) and value:
        value = value[0]
    return value


def format_table(by_model: dict[str, dict[str, dict[str, float]]]) -> str:
    """Tasks x metrics down, one ``value ± stderr`` column per model."""
    labels = list(by_model)
    rows = [f"{'task':<20} {'metric':<12} " + " ".join(f"{label:>16}" for label in labels)]
    from nemotron.lineage.kinds import eval_tasks

    for task, metrics in eval_tasks(by_model).items():
        for metric in metrics:
            if metric.endswith("_stderr"):
                continue
            cells = []
            for label in labels:
                values = by_model[label].get(task, {})
                value, err = values.get(metric), values.get(f"{metric}_stderr")
                cell = "" if value is None else f"{value:.3f}" + (
                    f" ± {err:.3f}" if isinstance(err, float) else "")
                cells.append(f"{cell:>16}")
            rows.append(f"{task:<20} {metric:<12} " + " ".join(cells))
    return "\n".join(rows)
