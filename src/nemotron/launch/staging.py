"""``--stage``: put a job on its target exactly as a submission would, and submit nothing.

Staging writes what a submission writes: the job folder (job.yaml, the owner-only secrets file,
the code snapshot where the job runs from one) and its record in state ``STAGED``; on Slurm also
the sbatch script, at the path NeMo-Run gives it, and the task folder its logs go to. It then
says how to run the job by hand (Slurm: ``salloc`` with the profile's resources, then the
``srun`` line of that script, same container flags and entry point; local: the one command) and
how to submit it later (``nemotron jobs submit <job id>``, :func:`submit_staged`).

Either way the stage entry point reads the same job.yaml, so the outputs and their lineage are
registered as for any other job. What staging learnt is kept in ``<job dir>/staged.json``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nemotron.errors import UserError
from nemotron.launch.execute import new_record, preflight
from nemotron.launch.jobdir import write_job_folder
from nemotron.launch.plan import Plan
from nemotron.launch.records import JobRecord, _now

STAGED = "STAGED"
STAGED_FILE = "staged.json"
# sbatch options that only make sense for a batch job (its log file, requeueing)
_BATCH_ONLY = ("output", "error", "open-mode", "kill-on-invalid-dep", "requeue", "dependency")
# The node launchers find the first node through srun's SLURM_LAUNCH_NODE_IPADDR, which names
# the login node when srun starts there (in salloc's shell): name the allocation's first host.
HEAD_NODE = ('export NEMOTRON_HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" '
             "| head -n 1)")


@dataclass
class Staged:
    """Where a staged job lies and how to run it."""

    job_id: str
    executor: str
    job_dir: str
    interactive: list[str]  # the commands that run it by hand, in order
    env: dict[str, str] = field(default_factory=dict)  # local: the stage's environment
    command: list[str] = field(default_factory=list)  # local: the stage command
    setup: list[str] = field(default_factory=list)  # local: the profile's setup commands
    sbatch: str | None = None  # slurm: the batch script
    task: str | None = None
    task_dir: str | None = None
    job_name: str | None = None
    experiment_id: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.job_dir) / STAGED_FILE

    def save(self) -> None:
        self.path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def load_staged(record: JobRecord) -> Staged:
    path = Path(record.job_dir) / STAGED_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"job {record.id} was not staged (no {path})",
                        hint="stage one with --stage --run PROFILE or --batch PROFILE") from None
    known = Staged.__dataclass_fields__
    return Staged(**{k: v for k, v in data.items() if k in known})


def stage_plan(plan: Plan) -> Staged:
    """Write the job onto its target as a submission would; submit nothing."""
    kind = plan.profile.executor
    if kind not in ("local", "slurm"):
        raise UserError(f"--stage supports local and Slurm profiles; {plan.profile.name} is "
                        f"{kind}", hint="use --run/--batch to run it, or --dry-run to see it")
    if kind == "slurm" and plan.profile.tunnel != "local":
        raise UserError(
            f"--stage needs a Slurm profile used from the login node (tunnel = 'local'); "
            f"{plan.profile.name} uses tunnel = '{plan.profile.tunnel}'",
            hint="run the --stage command on the cluster's login node with a tunnel = 'local' "
            "profile, or submit with --batch",
        )
    preflight(plan)
    write_job_folder(plan)
    record = new_record(plan)
    record.state = STAGED
    record.reason = "staged: run it by hand or `nemotron jobs submit`"
    record.save()
    staged = _stage_slurm(plan) if kind == "slurm" else _stage_local(plan)
    staged.save()
    return staged


def _stage_local(plan: Plan) -> Staged:
    """The one command, with the environment a local run gives it ($VARS expanded, as there)."""
    env = plan.process_env()
    line = " ".join([*(f"{k}={shlex.quote(os.path.expandvars(v))}" for k, v in env.items()),
                     shlex.join(plan.command())])
    return Staged(job_id=plan.job_id, executor="local", job_dir=str(plan.job_dir),
                  interactive=[*plan.profile.setup, line], env=env, command=plan.command(),
                  setup=list(plan.profile.setup))


def _stage_slurm(plan: Plan) -> Staged:
    """The sbatch script where NeMo-Run would write it, the task folder (logs, code) beside."""
    from nemotron.launch.slurm.executor import executor_for, experiment_id, task_name
    from nemotron.launch.slurm.render import command_for, sbatch_script, task_paths

    executor = executor_for(plan)
    name, exp_id = task_name(plan), experiment_id(plan)
    script = sbatch_script(executor, command_for(plan), name=name, experiment_id=exp_id)
    paths = task_paths(executor, name, exp_id)
    Path(paths["task_dir"], "code").mkdir(parents=True, exist_ok=True)
    Path(paths["sbatch"]).write_text(script)
    return Staged(
        job_id=plan.job_id, executor="slurm", job_dir=str(plan.job_dir),
        interactive=interactive_slurm(script, plan.profile.setup, plan.process_env()),
        sbatch=paths["sbatch"],
        task=name, task_dir=paths["task_dir"], job_name=paths["job_name"], experiment_id=exp_id,
    )


def interactive_slurm(script: str, setup: list[str], env: dict[str, str]) -> list[str]:
    """``salloc`` with the script's resources, then (in the shell it opens) the stage's
    environment as the script exports it, the profile's setup, and the script's ``srun`` line
    (same container flags and entry point) without its log file, so it prints here."""
    options = []
    for key, value in re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M):
        if key not in _BATCH_ONLY:
            options.append(f"--{key}={shlex.quote(value)}" if value else f"--{key}")
    exports: dict[str, str] = {}
    for line, name in re.findall(r"^(export ([A-Za-z_]\w*)=.*)$", script, re.M):
        if name in env:
            exports[name] = line  # the last one wins, as in the script
    sruns = re.findall(r"^srun .*$", script, re.M)
    if not sruns:
        raise ValueError("the sbatch script has no srun line")
    srun = re.sub(r" --output \S+", "", sruns[-1])
    return [" ".join(["salloc", *options]), *exports.values(), HEAD_NODE, *setup, srun]


def staged_lines(staged: Staged) -> list[str]:
    """What ``--stage`` prints after the job folder is written."""
    where = Path(staged.job_dir)
    kept = ", ".join(n for n in ("job.yaml", "secrets.env", "code") if (where / n).exists())
    lines = [f"staged {staged.job_id} (nothing submitted)",
             f"  job folder  {where}  ({kept})"]
    if staged.sbatch:
        lines.append(f"  sbatch      {staged.sbatch}")
        lines.append("")
        lines.append("Run it interactively: allocate, then run the job's srun line in the "
                     "shell salloc opens:")
    else:
        lines.append("")
        lines.append("Run it here:")
    lines.extend(f"  {line}" for line in staged.interactive)
    lines.append("")
    lines.append(f"Or submit it later: nemotron jobs submit {staged.job_id}")
    return lines


# ---------------------------------------------------------------------------------------------
# submitting a staged job


def submit_staged(record: JobRecord, say=print) -> JobRecord:
    """Submit a staged job as it was staged (same job folder, same script); detached."""
    if record.state != STAGED:
        raise UserError(f"job {record.id} is {record.state}, not staged",
                        hint="only jobs staged with --stage can be submitted this way")
    staged = load_staged(record)
    _refuse_if_done(record)
    if staged.executor == "local":
        from nemotron.launch.local import run_detached

        pid = run_detached(staged.command, staged.env, record, staged.setup)
        say(f"started {record.id} in the background (pid {pid}); "
            f"follow it with `nemotron jobs logs {record.id} -f`")
        return record
    return _submit_slurm(record, staged, say)


def _refuse_if_done(record: JobRecord) -> None:
    """A staged job run by hand already registered its outputs: submitting it again would only
    redo the same outputs."""
    done = produced(record)
    if done:
        raise UserError(f"{done} already exists with this job's identity (the staged job was "
                        "run by hand?)", hint="stage it again with --force to redo it")


def produced(record: JobRecord) -> str | None:
    """``NAME:vN`` of the staged job's output when it is registered already (a staged job run
    by hand updates no record; its output in the lineage store says it ran), else None."""
    from nemotron.stages.job import load_job

    job = load_job(Path(record.job_dir) / "job.yaml")
    db = Path(job.lineage.db)
    if job.job.force or not db.exists():
        return None
    from nemotron.lineage import Store

    store = Store.open(db)
    try:
        for out in job.outputs.values():
            found = store.find(out.name, identity=out.identity)
            if found is not None:
                return f"{out.name}:{found.version}"
    finally:
        store.close()
    return None


def _submit_slurm(record: JobRecord, staged: Staged, say) -> JobRecord:
    from nemotron.launch.slurm.executor import SUBMIT_COMMAND
    from nemotron.launch.slurm.jobs import SLURM_RECORD
    from nemotron.launch.slurm.state import SlurmRecord, SlurmShell, save_record
    from nemotron.launch.slurm.submission import _command_log

    argv = [*SUBMIT_COMMAND, str(staged.sbatch)]
    try:
        out = SlurmShell().run(argv)
    except UserError as exc:
        raise UserError(f"submitting {record.id} failed: {exc.message}",
                        hint="the job stays staged; fix the profile and stage it again") from None
    job_id = out.strip().split(";")[0]
    save_record(Path(record.job_dir) / SLURM_RECORD, SlurmRecord(
        job_id=job_id, task=str(staged.task), experiment_id=str(staged.experiment_id),
        sbatch=str(staged.sbatch), task_dir=str(staged.task_dir), job_name=str(staged.job_name),
        submit_command=argv, submitted=_now(), updated=_now(),
    ))
    record.update(scheduler_id=job_id, experiment_id=staged.experiment_id, state="PENDING",
                  reason=None, log=_command_log(str(staged.task_dir), str(staged.task), job_id, 0))
    say(f"submitted {record.id} as Slurm job {job_id}")
    say(f"follow: nemotron jobs status {record.id}    logs: nemotron jobs logs {record.id} -f")
    return record

