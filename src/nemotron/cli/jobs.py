"""``nemotron jobs``: list, status, logs and cancel for submitted jobs, from any terminal.

Built on our own job records (``$NEMOTRON_HOME/jobs/<id>/record.json``), refreshed from the
scheduler where one is involved, so status still reads right after ``sacct`` forgot the job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from nemotron.cli.completion import job_ids

jobs_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Submitted jobs: list, status, logs, cancel, submit a staged one.")

_COLORS = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "red", "RUNNING": "cyan",
           "PENDING": "yellow", "SKIPPED": "dim", "TIMEOUT": "red", "ORPHANED": "red"}


def _home(env_file: str | None) -> Path:
    from nemotron.launch.plan import nemotron_home
    from nemotron.profiles import load_env

    env = load_env(env_file)
    return nemotron_home(env.profile("local"))


def _refresh(record):
    """Bring a record up to date with its scheduler (Slurm) or process (local)."""
    from nemotron.launch.records import TERMINAL

    if record.state in TERMINAL:
        return record
    if record.state == "STAGED":
        from nemotron.launch.staging import produced

        done = produced(record)
        if done and not (record.reason or "").startswith("run by hand"):
            record.update(reason=f"run by hand: {done} is registered")
        return record
    if record.executor == "slurm":
        try:
            from nemotron.launch.slurm import refresh_record
        except ImportError:
            return record
        return refresh_record(record)
    if record.executor == "local":
        from nemotron.launch.local import refresh_local

        return refresh_local(record)
    return record


def _get(ident: str, env_file: str | None):
    from nemotron.errors import UserError
    from nemotron.launch.records import find_record

    record = find_record(_home(env_file), ident)
    if record is None:
        raise UserError(f"no job '{ident}'", hint="`nemotron jobs list` shows the known jobs")
    return _refresh(record)


def _chain_order(records: list) -> list:
    """A pipe's jobs upstream first: by dependency depth, then submission order."""
    by_id = {r.id: r for r in records}

    def depth(record, seen=()) -> int:
        ups = [by_id[d] for d in record.depends_on if d in by_id and d not in seen]
        return 1 + max((depth(u, (*seen, record.id)) for u in ups), default=-1)

    def slurm_id(record) -> int:
        return int(record.scheduler_id) if (record.scheduler_id or "").isdigit() else -1

    return sorted(records, key=lambda r: (r.created, depth(r), slurm_id(r)))


EnvOpt = typer.Option(None, "--env-file", help="env.toml (for NEMOTRON_HOME).")


@jobs_app.command("list")
def jobs_list(
    limit: int = typer.Option(20, "-n", "--limit", help="Show this many, newest first."),
    pipe: Optional[str] = typer.Option(None, "--pipe", help="Only the jobs of one pipe run."),  # noqa: UP045
    env_file: Optional[str] = EnvOpt,  # noqa: UP045
) -> None:
    """List recent jobs with their state.

    \b
    Examples:
      nemotron jobs list
      nemotron jobs list --pipe nano3-pipe-tiny-20261121-101500-ab12
    """
    from nemotron.cli.console import make_console
    from nemotron.cli.tables import new_table
    from nemotron.launch.records import list_records

    records = [_refresh(r) for r in list_records(_home(env_file))
               if not pipe or r.pipe == pipe][:limit]
    table = new_table(
        ["job", "stage", "config", "executor", "state", "scheduler id", "created"],
        {"job": [r.id for r in records], "scheduler id": [r.scheduler_id or "-" for r in records]},
        show_edge=False,
    )
    for r in records:
        color = _COLORS.get(r.state, "white")
        table.add_row(r.id, r.stage, r.config, r.profile, f"[{color}]{r.state}[/]",
                      r.scheduler_id or "-", r.created)
    make_console().print(table if records else "no jobs yet")


@jobs_app.command("status")
def jobs_status(ident: str = typer.Argument(..., help="Job id (or prefix), Slurm id, pipe id.",
                                            autocompletion=job_ids),
                env_file: Optional[str] = EnvOpt) -> None:  # noqa: UP045
    """Show a job's state, exit code, reason and outputs; the log tail when it failed.

    \b
    Examples:
      nemotron jobs status nano3-pretrain-tiny-20261121-101500-ab12
      nemotron jobs status 4242          # a Slurm job id
    """
    from nemotron.cli.console import make_console
    from nemotron.launch.records import list_records

    console = make_console()
    home = _home(env_file)
    pipe_members = [r for r in list_records(home) if r.pipe == ident]
    records = _chain_order(pipe_members) if pipe_members else [_get(ident, env_file)]
    worst = 0
    for r in records:
        r = _refresh(r) if pipe_members else r
        color = _COLORS.get(r.state, "white")
        console.print(f"[bold]{r.id}[/]  [{color}]{r.state}[/]"
                      + (f"  exit {r.exit_code}" if r.exit_code is not None else ""))
        console.print(f"  stage {r.family} {r.stage} -c {r.config} on {r.profile} ({r.executor})")
        if r.scheduler_id:
            console.print(f"  slurm job {r.scheduler_id}")
        if r.reason:
            console.print(f"  reason: {r.reason}", markup=False)
        for slot, out in r.outputs.items():
            console.print(f"  output {slot}: {out.get('name')} -> {out.get('path')}")
        if r.log:
            console.print(f"  log: {r.log}")
        failed_log = _log_file(r) if r.state == "FAILED" else None  # (fetched over SSH)
        if failed_log is not None and failed_log.is_file():
            tail = failed_log.read_text(errors="replace").splitlines()[-15:]
            console.print("  last lines of the log:")
            for line in tail:
                console.print(f"    {line}", markup=False)
        worst = max(worst, 1 if r.state in ("FAILED", "CANCELLED", "TIMEOUT", "ORPHANED") else 0)
    raise typer.Exit(worst)


def _log_file(record) -> Path | None:
    path = Path(record.log) if record.log else None
    if (path is None or not path.exists()) and record.executor == "slurm":
        from nemotron.launch.slurm import log_path

        path = log_path(record)
    return path


@jobs_app.command("logs")
def jobs_logs(
    ident: str = typer.Argument(..., help="Job id (or prefix) or Slurm id.",
                                autocompletion=job_ids),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until the job ends."),
    env_file: Optional[str] = EnvOpt,  # noqa: UP045
) -> None:
    """Print a job's log (stdout and stderr of the stage).

    \b
    Examples:
      nemotron jobs logs nano3-pretrain-tiny-20261121-101500-ab12
      nemotron jobs logs 4242 -f
    """
    import sys

    from nemotron.errors import UserError
    from nemotron.launch.records import TERMINAL

    record = _get(ident, env_file)
    if record.executor == "slurm":
        from nemotron.launch.slurm import is_remote, stream_remote_log

        if is_remote(record):
            def write(data: bytes) -> None:
                sys.stdout.buffer.write(data)
                sys.stdout.flush()

            if not stream_remote_log(record, write, follow=follow):
                raise UserError(f"job {record.id} has no log yet ({record.state})")
            return
    path = _log_file(record)
    while (path is None or not path.exists()) and follow and record.state not in TERMINAL:
        time.sleep(0.5)  # -f on a queued job: wait for it to start writing
        record = _refresh(record)
        path = _log_file(record)
    if path is None or not path.exists():
        raise UserError(f"job {record.id} has no log yet ({record.state})")
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                continue
            if not follow or _refresh(record).state in TERMINAL:
                rest = fh.read()
                sys.stdout.buffer.write(rest)
                sys.stdout.flush()
                break
            time.sleep(0.5)


@jobs_app.command("cancel")
def jobs_cancel(ident: str = typer.Argument(..., help="Job id (or prefix), Slurm id or pipe id.",
                                            autocompletion=job_ids),
                env_file: Optional[str] = EnvOpt) -> None:  # noqa: UP045
    """Cancel a job (and, on Slurm, the jobs that depend on it).

    \b
    Examples:
      nemotron jobs cancel nano3-pretrain-tiny-20261121-101500-ab12
      nemotron jobs cancel nano3-pipe-tiny-20261121-101500-ab12   # a whole pipe
    """
    from nemotron.cli.console import make_console
    from nemotron.launch.records import TERMINAL, list_records

    console = make_console()
    home = _home(env_file)
    members = [r for r in list_records(home) if r.pipe == ident]
    targets = _chain_order(members) if members else [_get(ident, env_file)]
    for record in targets:
        record = _refresh(record)
        if record.state in TERMINAL:
            why = f" ({record.reason})" if record.reason else ""
            console.print(f"{record.id}: {record.state}{why}")
            continue
        if record.state == "STAGED":  # nothing was submitted: only the record changes
            from nemotron.launch.records import _now

            record.update(state="CANCELLED", reason="cancelled while staged (never submitted)",
                          ended=_now())
        elif record.executor == "slurm":
            from nemotron.launch.slurm import cancel_record

            cancel_record(record)  # also cancels the jobs of its pipe that wait for it
        elif record.executor == "local":
            from nemotron.launch.local import cancel_local

            cancel_local(record)
        console.print(f"{record.id}: cancelled")
        if not members and record.pipe:
            for other in _chain_order([r for r in list_records(home) if r.pipe == record.pipe]):
                if other.state == "CANCELLED" and other.reason == \
                        f"upstream {record.stage} CANCELLED":
                    console.print(f"{other.id}: cancelled (it waited for {record.stage})")


@jobs_app.command("submit")
def jobs_submit(ident: str = typer.Argument(..., help="Id (or prefix) of a job staged with "
                                            "--stage.", autocompletion=job_ids),
                env_file: Optional[str] = EnvOpt) -> None:  # noqa: UP045
    """Submit a job staged with --stage, as it was staged (same job folder, same sbatch script),
    detached; follow it with `nemotron jobs status`.

    \b
    Examples:
      nemotron nano3 sft --stage --run my-cluster
      nemotron jobs submit nano3-sft-tiny-20261121-101500-ab12
    """
    from nemotron.launch.staging import submit_staged

    submit_staged(_get(ident, env_file), say=typer.echo)
