"""Slurm through NeMo-Run (docs/slurm.md says why each piece is as it is).

| module | owns |
|---|---|
| ``executor`` | a typed profile (and a plan) -> ``SlurmExecutor``; where a submission lives |
| ``render`` | the exact sbatch script, without side effects |
| ``submission`` | one NeMo-Run experiment per submission; attached runs that stream the logs |
| ``state`` | a job's state from its Slurm id (controller, sacct, our record); cancel, wait |
| ``jobs`` | ``nemotron jobs`` on Slurm job records: refresh, cancel, logs |

Imports go down this table's reverse order (state <- jobs <- executor <- render <- submission); none
imports NeMo-Run at module level. The names below are the package's interface.
"""

from nemotron.launch.slurm.executor import detached_stdin, executor_for, slurm_executor
from nemotron.launch.slurm.jobs import (
    cancel_record,
    is_remote,
    log_path,
    refresh_record,
    stream_remote_log,
)
from nemotron.launch.slurm.render import (
    command_for,
    new_experiment_id,
    render_sbatch,
    sbatch_script,
    submit_command,
    task_paths,
)
from nemotron.launch.slurm.state import (
    JobState,
    SlurmRecord,
    SlurmShell,
    cancel_blocked,
    cancel_job,
    job_logs,
    job_state,
    load_record,
    usable_dependencies,
    wait_for_job,
)
from nemotron.launch.slurm.submission import SlurmTask, SubmittedJob, submit, submit_plans

__all__ = [
    "JobState", "SlurmRecord", "SlurmShell", "SlurmTask", "SubmittedJob", "cancel_blocked",
    "cancel_job", "cancel_record", "command_for", "detached_stdin", "executor_for", "job_logs",
    "is_remote", "job_state", "load_record", "log_path", "new_experiment_id", "refresh_record",
    "render_sbatch", "sbatch_script", "slurm_executor", "submit", "submit_command",
    "stream_remote_log", "submit_plans", "task_paths", "usable_dependencies", "wait_for_job",
]  # fmt: skip
