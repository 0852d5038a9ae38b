"""Docker profiles: the stage command in a container on this machine, via NeMo-Run's
DockerExecutor. The job folder is mounted at the same path, so ``job.yaml`` and the code
snapshot are where the command expects them."""

from __future__ import annotations

from nemotron.errors import UserError
from nemotron.launch.plan import Plan
from nemotron.launch.records import JobRecord, _now


def docker_executor(plan: Plan):
    from nemotron.launch.nemorun import import_nemo_run

    run = import_nemo_run()
    p = plan.profile
    volumes = [*p.mounts, f"{plan.job_dir}:{plan.job_dir}",
               f"{plan.artifacts_root}:{plan.artifacts_root}"]
    if plan.lineage_db.parent != plan.artifacts_root:
        volumes.append(f"{plan.lineage_db.parent}:{plan.lineage_db.parent}")
    kwargs = dict(
        container_image=p.container_image, num_gpus=p.gpus_per_node or None,
        runtime=p.docker_runtime, volumes=volumes, env_vars=plan.process_env(),
        job_dir=str(plan.job_dir / "nemo_run"),
    )
    if p.shm_size:
        kwargs["shm_size"] = p.shm_size
    return run.DockerExecutor(**{k: v for k, v in kwargs.items() if v is not None})


def run_docker(plan: Plan, record: JobRecord, *, attached: bool, say=print) -> int:
    import shutil

    if shutil.which("docker") is None:
        raise UserError("the docker profile needs the docker CLI and a running daemon")
    from nemotron.launch.nemorun import import_nemo_run

    run = import_nemo_run()
    cmd = plan.command()
    script = run.Script(path=cmd[0], args=cmd[1:])
    with run.Experiment(plan.job_id, executor=docker_executor(plan), log_level="WARN") as exp:
        exp.add(script, name=plan.stage.name)
        exp.run(detach=not attached, tail_logs=attached)
        record.update(experiment_id=exp._id, state="RUNNING", started=_now())
    if not attached:
        say(f"submitted {plan.job_id} to docker (experiment {exp._id})")
        return 0
    status = exp.status(return_dict=True) or {}
    state = str((status.get(plan.stage.name) or {}).get("status", "UNKNOWN"))
    ok = "SUCCEEDED" in state
    record.update(state="SUCCEEDED" if ok else "FAILED", exit_code=0 if ok else 1, ended=_now())
    return 0 if ok else 1
