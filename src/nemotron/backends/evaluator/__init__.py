"""The ``evaluator`` backend: NeMo Evaluator (nemo-evaluator-launcher) against a served model.

:func:`eval` serves the input checkpoint on this node (see
:mod:`~nemotron.backends.evaluator.translate`), waits until it answers its health check, writes
the launcher run config (Hydra document: ``deployment: none`` pointing at that endpoint, the
recipe's benchmark list), runs ``nemo_evaluator_launcher.api.functional.run_eval``, polls the
invocation until every task is done, and turns each task's ``results.yml`` into
``{results: {task: {metric: value}}}``. Targets the launcher API of 0.1.x-0.2.x
(``RunConfig.from_hydra`` from a config file, whose keywords changed between them;
``run_eval(cfg, dry_run)``; ``get_status([id])``). The launcher is imported only here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

DONE = {"success", "failed", "killed", "not_found", "error"}


def eval(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    import yaml

    from nemotron.backends.evaluator.translate import (
        deploy_command,
        deployment_settings,
        endpoint_url,
        for_launcher_version,
        launcher_config,
        parse_results,
    )

    if cfg.eval is None:
        raise UserError("the evaluator backend needs an eval: section")
    checkpoint, fmt = model_checkpoint(job)
    settings = deployment_settings(cfg, fmt)
    gpus = int((job.job.profile or {}).get("gpus_per_node") or 8)
    cmd = deploy_command(cfg, settings, checkpoint, gpus, python=sys.executable)
    server = None
    try:
        if cmd is not None:
            print("[nemotron] serving: " + " ".join(cmd), flush=True)
            log = (work_dir / "server.log").open("a")
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
            host = socket.gethostname()
            wait_healthy(f"http://127.0.0.1:{settings['port']}{settings['health_path']}",
                         server, float(settings["timeout_s"]), work_dir / "server.log")
        else:
            host = None
        url = endpoint_url(settings, host or "127.0.0.1")
        document = launcher_config(cfg, settings, url, str(work_dir / "launcher"))
        launcher = launcher_version()
        document = for_launcher_version(document, launcher)
        config_file = work_dir / "launcher_run.yaml"
        config_file.write_text(yaml.safe_dump(document, sort_keys=False, width=100))
        invocation = launch(config_file)
        wait_done(invocation, float(settings.get("eval_timeout_s", 7 * 24 * 3600)))
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
    results: dict[str, dict[str, float]] = {}
    for path in sorted((work_dir / "launcher").rglob("results.yml")):
        results.update(parse_results(yaml.safe_load(path.read_text()) or {}))
    if not results:
        raise RuntimeError(f"no results.yml under {work_dir / 'launcher'}; see the task logs")
    first = next(iter(results))
    return {"results": results, "primary": f"{first}/{next(iter(results[first]))}",
            "extra": {"invocation": invocation, "endpoint": url, "checkpoint": checkpoint,
                      "tasks": [t.name for t in cfg.eval.tasks],
                      "nemo_evaluator_launcher": launcher}}


def model_checkpoint(job) -> tuple[str, str]:
    ref = job.inputs.get("model")
    if ref is None:
        raise UserError("eval needs a model input (run.model=...)")
    meta = ref.metadata or {}
    folder = Path(ref.path) / meta["checkpoint"] if meta.get("checkpoint") else Path(ref.path)
    fmt = meta.get("format") or ("hf" if (folder / "config.json").is_file() else "megatron")
    if meta.get("peft") == "lora":
        raise UserError(f"{ref.name or ref.path} holds LoRA adapters only",
                        hint="merge them first: `model merge-lora`")
    tracker = folder / "latest_checkpointed_iteration.txt"
    if fmt == "megatron" and tracker.is_file() and tracker.read_text().strip().isdigit():
        folder = folder / f"iter_{int(tracker.read_text().strip()):07d}"
    return str(folder), fmt


def wait_healthy(url: str, server, timeout_s: float, log: Path) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the model server exited with code {server.returncode}; "
                               f"see {log}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(10)
    raise RuntimeError(f"the model server did not become healthy at {url} in {timeout_s:.0f} s")


def launcher_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nemo-evaluator-launcher")
    except PackageNotFoundError:
        raise UserError(
            "nemo-evaluator-launcher is not installed in this container",
            hint="add `pip install nemo-evaluator-launcher` to the profile's setup commands",
        ) from None


def launch(config_file: Path) -> str:
    """Load the run config the way the installed launcher expects and start the evaluation."""
    import inspect

    try:
        from nemo_evaluator_launcher.api.functional import run_eval
        from nemo_evaluator_launcher.api.types import RunConfig
    except ImportError:
        raise UserError(
            "nemo-evaluator-launcher is not installed in this container",
            hint="add `pip install nemo-evaluator-launcher` to the profile's setup commands",
        ) from None
    params = inspect.signature(RunConfig.from_hydra).parameters
    if "config" in params:  # 0.2.x: the path of the config file
        run_config = RunConfig.from_hydra(config=str(config_file))
    else:  # 0.1.x: its folder and name
        run_config = RunConfig.from_hydra(config_name=config_file.stem,
                                          config_dir=str(config_file.parent))
    invocation = run_eval(run_config, dry_run=False)
    if not invocation:
        raise RuntimeError("nemo-evaluator-launcher returned no invocation id")
    print(f"[nemotron] nemo-evaluator-launcher invocation {invocation}", flush=True)
    return invocation


def wait_done(invocation: str, timeout_s: float, poll_s: float = 30.0) -> None:
    from nemo_evaluator_launcher.api.functional import get_status

    deadline = time.monotonic() + timeout_s
    while True:
        statuses = get_status([invocation])
        states = [s.get("status") for s in statuses]
        if states and all(state in DONE for state in states):
            failed = [s for s in statuses if s.get("status") != "success"]
            if failed:
                names = ", ".join(str(s.get("job_id")) for s in failed)
                raise RuntimeError(f"evaluation job(s) {names} ended as "
                                   f"{sorted({s.get('status') for s in failed})}")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"evaluation {invocation} still running after {timeout_s:.0f} s")
        time.sleep(poll_s)


def describe(cfg, entry: str, stage: str) -> list[str]:
    """What the node will run, for a dry-run (pure; placeholders for node-side paths)."""
    from nemotron.backends.evaluator.translate import (
        deploy_command,
        deployment_settings,
        endpoint_url,
        launcher_config,
    )

    settings = deployment_settings(cfg, "megatron")
    cmd = deploy_command(cfg, settings, "<model>", gpus=8)
    document = launcher_config(cfg, settings, endpoint_url(settings), "<out>/launcher")
    tasks = ", ".join(t["name"] for t in document["evaluation"]["tasks"])
    return [("serve: " + " ".join(cmd)) if cmd else f"endpoint: {settings['url']}",
            f"nemo-evaluator-launcher run_eval(<out>/launcher_run.yaml: execution="
            f"{settings['execution']}, deployment=none): {tasks}"]
