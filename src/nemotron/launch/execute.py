"""Executing plans: write the job folder and record, then hand the command to an executor."""

from __future__ import annotations

from nemotron.errors import UserError
from nemotron.launch.jobdir import make_private_dir, write_job_folder
from nemotron.launch.plan import Plan
from nemotron.launch.records import JobRecord, _now
from nemotron.lineage.writer import check_no_writer


def new_record(plan: Plan, depends_on: list[str] | None = None) -> JobRecord:
    return JobRecord(
        id=plan.job_id, family=plan.family.name, stage=plan.stage.name,
        config=plan.config_name, executor=plan.profile.executor, profile=plan.profile.name,
        job_dir=str(plan.job_dir), pipe=plan.pipe_id, depends_on=list(depends_on or []),
        outputs={k: {"name": o.name, "identity": o.identity, "path": o.path}
                 for k, o in plan.outputs.items()},
    )


def preflight(plan: Plan) -> None:
    """Refuse plans that cannot work where they would run (before anything is written)."""
    if plan.warnings and plan.profile.executor == "local" and plan.decision == "run":
        first, _, rest = plan.warnings[0].partition(". ")
        raise UserError(first, hint=rest or None)
    if plan.profile.executor == "local":
        from nemotron.launch.local import check_local_world

        check_local_world(plan)


def execute(plan: Plan, *, attached: bool, say=print) -> int:
    """Run or submit one planned stage; returns an exit code (0 when submitted detached)."""
    if plan.decision == "skip":
        say(f"skip {plan.stage.name}: {plan.reason}")
        return 0
    preflight(plan)
    for out in plan.outputs.values():  # the stage checks again under the lock; this is early
        check_no_writer(out.path)
    write_job_folder(plan)
    record = new_record(plan)
    record.save()
    kind = plan.profile.executor
    if kind == "local":
        from nemotron.launch.local import local_command, run_attached, run_detached

        command = local_command(plan)
        if attached:
            return run_attached(command, plan.process_env(), record, plan.profile.setup)
        pid = run_detached(command, plan.process_env(), record, plan.profile.setup)
        say(f"started {plan.job_id} in the background (pid {pid}); "
            f"follow it with `nemotron jobs logs {plan.job_id} -f`")
        return 0
    if kind == "slurm":
        from nemotron.launch.slurm import submit_plans

        return submit_plans([plan], [record], attached=attached, say=say)
    if kind == "docker":
        from nemotron.launch.docker import run_docker

        return run_docker(plan, record, attached=attached, say=say)
    raise UserError(f"unknown executor '{kind}'")


def mark_skipped(plan: Plan) -> JobRecord:
    record = new_record(plan)
    make_private_dir(plan.job_dir)
    record.update(state="SKIPPED", reason=plan.reason, ended=_now())
    return record
