"""Launchers that run on the compute nodes, inside a Slurm job step (one task per node).

``python -m nemotron.launch.node torchrun --nproc-per-node N -- CMD...``
    Runs CMD under ``torch.distributed.run``: N processes per node, the job's nodes joined by a
    c10d rendezvous on the first node (``SLURM_LAUNCH_NODE_IPADDR``, the node that runs the batch
    script). One process in all runs CMD as it is.

``python -m nemotron.launch.node ray -- CMD...``
    Starts a Ray cluster inside the allocation: the head on the first node, a worker on every
    other node; runs CMD on the head with ``RAY_ADDRESS`` exported once every worker joined; stops
    Ray on every node when CMD ends (or the job is cancelled) and exits with CMD's code. The nodes
    meet through a folder beside the task's working directory (the job's task folder, shared by
    all nodes; ``/nemo_run`` inside containers), so no container runtime, pyxis flag or extra srun
    is needed: the same step works on bare metal and in containers. On one node without the
    ``ray`` package, CMD runs without a cluster (and says so).

Standard library only: this runs in the job's interpreter, in or outside a container.
``launcher_command`` builds the line that starts a stage under one of these launchers (Slurm
jobs, and local runs with several processes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

JOIN_TIMEOUT = float(os.environ.get("NEMOTRON_RAY_JOIN_TIMEOUT", "600"))


def say(message: str) -> None:
    print(f"[nemotron.launch] {message}", file=sys.stderr, flush=True)


def _int_env(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").split("(")[0]  # SLURM_TASKS_PER_NODE: "2(x3)"
        if value.isdigit():
            return int(value)
    return default


def job_nodes() -> int:
    return _int_env("SLURM_JOB_NUM_NODES", "SLURM_NNODES", default=1)


def node_rank() -> int:
    return _int_env("SLURM_NODEID", "SLURM_PROCID", default=0)


def head_address() -> str:
    """The first node's address: ``$NEMOTRON_HEAD_NODE`` when set (a staged job's srun started
    by hand from the login node, where SLURM_LAUNCH_NODE_IPADDR names the login node; the
    printed commands set it to the allocation's first host), else SLURM_LAUNCH_NODE_IPADDR,
    which srun sets to the node it runs on: in a batch job the batch host, the first node."""
    named = os.environ.get("NEMOTRON_HEAD_NODE", "").strip()
    if named:
        try:
            return socket.gethostbyname(named)
        except OSError:
            return named
    ip = os.environ.get("SLURM_LAUNCH_NODE_IPADDR")
    if ip:
        return ip
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def port_for_job(base: int) -> int:
    """A port per job, so two jobs sharing a node do not collide."""
    return base + _int_env("SLURM_JOB_ID", default=0) % 1000


# ---------------------------------------------------------------------------------------------
# torchrun


def launcher_command(python: str, launcher: str, cmd: list[str], nproc: int = 1) -> list[str]:
    """``cmd`` under the node launcher ``launcher`` (``single``: ``cmd`` itself)."""
    if launcher == "torchrun":
        return [python, "-m", "nemotron.launch.node", "torchrun", f"--nproc-per-node={nproc}",
                "--", *cmd]
    if launcher == "ray":
        return [python, "-m", "nemotron.launch.node", "ray", "--", *cmd]
    return list(cmd)


def torchrun_argv(cmd: list[str], nproc: int, nodes: int) -> list[str]:
    """The torch.distributed.run command line for CMD (``python -m module args`` or a binary)."""
    argv = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}",
            f"--nproc-per-node={nproc}"]
    if nodes == 1:
        argv.append("--standalone")
    else:
        argv += ["--rdzv-backend=c10d", f"--rdzv-endpoint={head_address()}:{port_for_job(29500)}",
                 f"--rdzv-id={os.environ.get('SLURM_JOB_ID', 'nemotron')}"]
    if len(cmd) >= 3 and cmd[1] == "-m":
        return [*argv, "-m", *cmd[2:]]
    return [*argv, "--no-python", *cmd]


def worker_threads(nproc: int) -> int:
    """CPU threads for each of ``nproc`` processes: the cores this task may use, shared out
    (torchrun would give each process one thread)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, nproc))


def run_torchrun(cmd: list[str], nproc: int) -> int:
    nodes = job_nodes()
    if nodes * nproc == 1:
        say("one process in all: running the stage without torchrun")
        os.execvp(cmd[0], cmd)
    argv = torchrun_argv(cmd, nproc, nodes)
    os.environ.setdefault("OMP_NUM_THREADS", str(worker_threads(nproc)))
    where = "" if nodes == 1 else f", rendezvous at {head_address()}:{port_for_job(29500)}"
    say(f"torchrun on {socket.gethostname()}: node {node_rank()} of {nodes} node(s) x {nproc} "
        f"process(es){where}")
    os.execv(argv[0], argv)
    return 1  # not reached


# ---------------------------------------------------------------------------------------------
# ray


def ray_command() -> list[str] | None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return None
    found = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    if os.access(found, os.X_OK):
        return [found]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def ray_env() -> dict[str, str]:
    """The environment of ``ray start``: a raylet whose Python agents are slow to come up (a
    busy node, Python on a slow shared filesystem) aborts the node; give them longer. A value
    the job sets itself wins."""
    env = dict(os.environ)
    env.setdefault("RAY_agent_register_timeout_ms", "180000")
    return env


class RayNode:
    """``ray start --block`` as a child process, so it can be stopped by its own pid (SIGTERM
    makes it drain and stop every Ray process it started)."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        self.handle = open(log, "ab")
        self.proc = subprocess.Popen([*argv, "--block"], stdout=self.handle, env=ray_env(),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_started(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with code {self.proc.returncode}; "
                                   f"see {self.log}")
            if b"block forever" in self.log.read_bytes() or b"Ray runtime started" in \
                    self.log.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"ray start did not finish in {timeout:.0f} s; see {self.log}")

    def stop(self, grace: float = 40) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.handle.close()


def rendezvous_dir() -> Path:
    """Shared by the nodes of one (re)start of the job: beside the task's working directory."""
    job = os.environ.get("SLURM_JOB_ID", str(os.getpid()))
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    return Path.cwd().parent / f"ray-{job}-{restart}"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def run_ray(cmd: list[str]) -> int:
    nodes, rank = job_nodes(), node_rank()
    ray = ray_command()
    if ray is None:
        if nodes == 1:
            say("the ray package is not installed here: one node, so the stage runs without a "
                "Ray cluster")
            return subprocess.call(cmd)
        say(f"the ray package is not installed here, and this job has {nodes} nodes: install "
            "ray in the job's environment (or container)")
        return 2
    meet = rendezvous_dir()
    meet.mkdir(parents=True, exist_ok=True)
    port = port_for_job(26000)
    if rank == 0:
        return _ray_head(ray, cmd, meet, nodes, port)
    return _ray_worker(ray, meet, rank)


def _ray_head(ray: list[str], cmd: list[str], meet: Path, nodes: int, port: int) -> int:
    ip = head_address()
    address = f"{ip}:{port}"
    head = RayNode(
        [*ray, "start", "--head", f"--node-ip-address={ip}", f"--port={port}",
         f"--ray-client-server-port={port + 1}", f"--dashboard-port={port + 2}",
         f"--dashboard-agent-listen-port={port + 3}", "--include-dashboard=false",
         "--disable-usage-stats"],
        meet / "head.log",
    )
    child: subprocess.Popen | None = None

    def stop(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        head.wait_started()
        (meet / "address").write_text(address)
        say(f"ray head started at {address}; waiting for {nodes - 1} worker node(s)")
        _wait_for(lambda: _joined(meet, nodes), JOIN_TIMEOUT,
                  f"{nodes - 1} ray worker node(s) to join")
        say(f"ray cluster of {nodes} node(s) ready; running the stage with RAY_ADDRESS={address}")
        child = subprocess.Popen(cmd, env={**os.environ, "RAY_ADDRESS": address})
        code = child.wait()
    except (RuntimeError, KeyboardInterrupt) as exc:
        say(f"ray launcher: {exc or 'interrupted'}")
        code = 1 if isinstance(exc, RuntimeError) else 130
    finally:
        (meet / "done").write_text("")
        head.stop()
        say("ray cluster stopped")
    return code


def _joined(meet: Path, nodes: int) -> bool:
    """Every worker node joined (``joined-<rank>``); a worker that failed to start
    (``failed-<rank>``) ends the wait with its reason."""
    failed = sorted(meet.glob("failed-*"))
    if failed:
        raise RuntimeError(f"ray worker {failed[0].read_text().strip()}")
    return len(list(meet.glob("joined-*"))) >= nodes - 1


def _interrupt(signum, _frame):
    raise KeyboardInterrupt


def _ray_worker(ray: list[str], meet: Path, rank: int) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    worker = None
    try:
        _wait_for(lambda: (meet / "address").exists() or (meet / "done").exists(), JOIN_TIMEOUT,
                  "the ray head")
        if (meet / "done").exists():
            return 0
        address = (meet / "address").read_text().strip()
        port = int(address.rpartition(":")[2])
        worker = RayNode([*ray, "start", f"--address={address}", "--disable-usage-stats",
                          f"--dashboard-agent-listen-port={port + 3}"],
                         meet / f"worker-{rank}.log")
        worker.wait_started()
        (meet / f"joined-{rank}").write_text(socket.gethostname())
        _wait_for(lambda: (meet / "done").exists(), float("inf"), "the stage to end")
        return 0
    except RuntimeError as exc:
        say(f"ray worker {rank}: {exc}")
        (meet / f"failed-{rank}").write_text(f"{socket.gethostname()}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if worker is not None:
            worker.stop()


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nemotron.launch.node",
                                     description="Run a stage command under a node launcher.")
    sub = parser.add_subparsers(dest="launcher", required=True)
    torchrun = sub.add_parser("torchrun", help="torch.distributed.run across the job's nodes")
    torchrun.add_argument("--nproc-per-node", type=int, default=1)
    torchrun.add_argument("cmd", nargs=argparse.REMAINDER)
    ray = sub.add_parser("ray", help="a Ray cluster across the job's nodes")
    ray.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command after --")
    if args.launcher == "torchrun":
        return run_torchrun(cmd, args.nproc_per_node)
    return run_ray(cmd)


if __name__ == "__main__":
    sys.exit(main())
