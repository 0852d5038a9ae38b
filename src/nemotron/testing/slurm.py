"""A throwaway one-node Slurm cluster (with accounting) that lives entirely in one folder.

Used by the ``slurm_cluster`` pytest fixture and by ``scripts/slurm-cluster``. Standard library
only, so the script runs with the system Python before any venv exists.

Layout under the cluster folder ``DIR``::

    cluster.json        ports, cluster name, the database password (mode 600)
    etc/slurm.conf      SLURM_CONF for every client call; slurmdbd.conf beside it (mode 600)
    munge/              the cluster's own MUNGE key and PRNG seed (mode 700)
    run/                pid files and the munged / MariaDB sockets
    db/                 a private MariaDB datadir (the accounting database)
    state/ spool/       slurmctld state, slurmd spool
    log/                one log per daemon

Facts this relies on (probed on Debian 12, Slurm 22.05): slurmd/slurmctld run as root with
proctrack/linuxproc, task/none, no cgroups; ``slurmd -N localhost``; slurmdbd reads
``slurmdbd.conf`` from the folder of SLURM_CONF and refuses it unless mode 600; clients reach
slurmdbd through the MUNGE socket named by ``AccountingStoragePass`` (not ``AuthInfo``); the
controller state and the accounting database must be wiped together (job ids restart at 1).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "slurmdbd", "munge", "mariadb-server")
BINARIES = (
    "slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "sacctmgr", "scontrol", "squeue",
    "munged", "mariadbd", "mariadb-install-db", "mariadb",
)  # fmt: skip
# Stopped in this order (dependents first); started in the reverse order.
DAEMONS = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")
CLUSTER_NAME = "nemotron"
ACCOUNT = "nemotron"
PARTITION = "debug"
NODE = "localhost"
ENABLE_HINT = (
    "run `NEMOTRON_SLURM_TESTS=1 uv run pytest -m slurm` as root (installs Slurm when missing), "
    "or first `scripts/slurm-cluster up`"
)


class ClusterError(RuntimeError):
    """The cluster could not be installed, started or stopped; the message says why."""


def default_dir() -> Path:
    """``$NEMOTRON_SLURM_DIR``, else ``<tmp>/nemotron-slurm``: shared by the script and fixture."""
    configured = os.environ.get("NEMOTRON_SLURM_DIR")
    return Path(configured or os.path.join(tempfile.gettempdir(), "nemotron-slurm"))


@dataclass
class Cluster:
    """A running cluster: ``env`` holds what every Slurm client call needs (SLURM_CONF)."""

    dir: Path
    name: str = CLUSTER_NAME
    account: str = ACCOUNT
    partition: str = PARTITION
    ports: dict[str, int] = field(default_factory=dict)
    started: bool = True  # False when this object found the cluster already running

    @property
    def conf(self) -> Path:
        return self.dir / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf), "NEMOTRON_SLURM_DIR": str(self.dir)}

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        """Run a Slurm client command against this cluster; return its stdout."""
        return _run(list(argv), env=_client_env(self.dir), check=check, timeout=timeout)

    def stop(self) -> None:
        stop_cluster(self.dir)

    def status(self) -> dict[str, int | None]:
        return daemon_pids(self.dir)

    def release_requeued(self, job_id: str, timeout: float = 120) -> None:
        """Start a requeued job now instead of after Slurm's hold (about 2 minutes, reason
        ``BeginTime``). Waits for the requeue to settle first: moving the start time while the
        failed run is still completing ends the job as FAILED instead."""
        job = str(job_id)

        def held() -> bool:
            shown = self.run("scontrol", "show", "job", "-o", job, check=False)
            return "JobState=PENDING" in shown and "Reason=BeginTime" in shown

        _wait(f"job {job} to be requeued", held, timeout)
        time.sleep(3)
        self.run("scontrol", "update", f"JobId={job}", "StartTime=now")

    def forget_job(self, job_id: str, timeout: float = 40) -> None:
        """Make the cluster forget a finished job, as MinJobAge plus a ``PurgeJobAfter`` purge do.

        Waits until the controller has dropped the job from memory (MinJobAge, 5 s here) and
        only then deletes its accounting rows: until then the controller keeps sending slurmdbd
        updates about the job, which would write the rows again.
        """
        argv = ["sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "State"]
        _wait(
            f"the controller to forget job {job_id}",
            lambda: not self.run("scontrol", "show", "job", "-o", str(job_id), check=False),
            timeout,
        )
        table = f"{self.name}_job_table"
        step_table = f"{self.name}_step_table"
        sql = (
            f"DELETE s FROM {step_table} s JOIN {table} j ON s.job_db_inx = j.job_db_inx "
            f"WHERE j.id_job = {int(job_id)}; DELETE FROM {table} WHERE id_job = {int(job_id)};"
        )
        _sql(self.dir, sql, database="slurm_acct_db")
        if self.run(*argv, check=False).strip():
            raise ClusterError(f"sacct still knows job {job_id} after deleting its rows")


# ---------------------------------------------------------------------------------------------
# processes


def _paths(d: Path) -> dict[str, Path]:
    return {
        "conf": d / "etc" / "slurm.conf",
        "dbdconf": d / "etc" / "slurmdbd.conf",
        "meta": d / "cluster.json",
        "key": d / "munge" / "munge.key",
        "seed": d / "munge" / "munged.seed",
        "munge_sock": d / "run" / "munge.sock",
        "mysql_sock": d / "run" / "mysqld.sock",
        "db": d / "db",
        "db_ready": d / "db" / ".nemotron-initialized",
        "state": d / "state",
        "spool": d / "spool",
        "log": d / "log",
        "run": d / "run",
    }


def _pidfile(d: Path, daemon: str) -> Path:
    return d / "run" / f"{daemon}.pid"


def _proc_text(pid: int, name: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _belongs(pid: int, d: Path) -> bool:
    """True when process ``pid`` was started for the cluster in ``d`` (argv or SLURM_CONF)."""
    conf = str(d / "etc" / "slurm.conf")
    cmdline = _proc_text(pid, "cmdline") + " "
    if f"{d}/run/" in cmdline or f"--datadir={d}/db " in cmdline:
        return True
    return f"SLURM_CONF={conf} " in _proc_text(pid, "environ") + " "


def _alive(pid: int) -> bool:
    stat = _proc_text(pid, "stat")
    if not stat:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _comm(pid: int) -> str:
    return _proc_text(pid, "comm").strip()


def daemon_pids(d: Path) -> dict[str, int | None]:
    """The pid of each daemon of cluster ``d`` that is running, else None."""
    d = Path(d).resolve()
    found: dict[str, int | None] = {name: None for name in DAEMONS}
    for name in DAEMONS:
        try:
            pid = int(_pidfile(d, name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _alive(pid) and _comm(pid) == name and _belongs(pid, d):
            found[name] = pid
    return found


def _stray_pids(d: Path, names: tuple[str, ...]) -> list[int]:
    """Processes named ``names`` that belong to cluster ``d`` (found even without pid files)."""
    strays = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        if _comm(pid) in names and _alive(pid) and _belongs(pid, d):
            strays.append(pid)
    return strays


def _terminate(pids: list[int], timeout: float = 10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _run(
    argv: list[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 60
) -> str:
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        if check:
            raise ClusterError(f"`{' '.join(argv)}` failed: {exc}") from exc
        return ""
    if check and done.returncode != 0:
        raise ClusterError(
            f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def _client_env(d: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SLURM_CONF"] = str(d / "etc" / "slurm.conf")
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not written)"
    return "\n".join(text[-lines:])


def _wait(what: str, probe, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            detail = f"\n--- tail of {log}:\n{_tail(log)}" if log else ""
            raise ClusterError(f"{what} did not come up within {timeout:.0f}s{detail}")
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# installation


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def install_allowed() -> bool:
    flag = os.environ.get("NEMOTRON_SLURM_INSTALL")
    if flag is not None:
        return flag.strip().lower() in ("1", "true", "yes")
    return os.geteuid() == 0


def ensure_installed(allow: bool | None = None) -> None:
    """Install the Debian packages when a binary is missing and installing is allowed."""
    missing = missing_binaries()
    if not missing:
        return
    allow = install_allowed() if allow is None else allow
    if not allow or shutil.which("apt-get") is None:
        raise ClusterError(
            f"Slurm is not installed (missing: {', '.join(missing)}); install the Debian "
            f"packages {' '.join(PACKAGES)}, or rerun as root / with NEMOTRON_SLURM_INSTALL=1"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"slurm-cluster: installing {' '.join(PACKAGES)} (apt-get)", file=sys.stderr)
    _run([*sudo, "apt-get", "update", "-qq"], env=env, timeout=600)
    policy = _run(["apt-cache", "policy", "slurmctld"], env=env, check=False)
    candidate = next((ln.split()[-1] for ln in policy.splitlines() if "Candidate:" in ln), "?")
    print(f"slurm-cluster: Slurm candidate version {candidate}", file=sys.stderr)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    _run([*sudo, *install], env=env, timeout=1200)
    still = missing_binaries()
    if still:
        raise ClusterError(f"installed {' '.join(PACKAGES)} but still missing: {', '.join(still)}")


# ---------------------------------------------------------------------------------------------
# configuration


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(d: Path, old: dict[str, int], running: dict[str, int | None]) -> dict[str, int]:
    """Keep the ports of daemons still running; otherwise reuse or pick free ones near a base
    derived from the folder, so two clusters in two folders do not collide."""
    owner = {
        "slurmctld": "slurmctld", "slurmd": "slurmd", "slurmdbd": "slurmdbd", "mysql": "mariadbd",
    }  # fmt: skip
    base = 17000 + (zlib.crc32(str(d).encode()) % 1000) * 8
    ports: dict[str, int] = {}
    candidate = base
    for key, daemon in owner.items():
        port = old.get(key)
        if port and (running.get(daemon) or _port_free(port)):
            ports[key] = port
            continue
        while candidate in ports.values() or not _port_free(candidate):
            candidate += 1
        ports[key] = candidate
        candidate += 1
    return ports


def _node_resources() -> tuple[int, int]:
    """Declared CPUs and memory (MB): at least 8 CPUs so a few tiny jobs run at once on a
    2-core machine (``SlurmdParameters=config_overrides`` lets slurmd accept the declaration)."""
    cpus = max(8, os.cpu_count() or 1)
    mem_mb = 4096
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = max(1024, int(line.split()[1]) // 1024 - 512)
    except OSError:
        pass
    return cpus, mem_mb


def _slurm_conf(d: Path, ports: dict[str, int]) -> str:
    p = _paths(d)
    cpus, mem_mb = _node_resources()
    return f"""# Generated by nemotron.testing.slurm for a throwaway one-node test cluster.
ClusterName={CLUSTER_NAME}
SlurmctldHost={NODE}(127.0.0.1)
SlurmctldPort={ports["slurmctld"]}
SlurmdPort={ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={p["munge_sock"]}
CredType=cred/munge
StateSaveLocation={p["state"]}
SlurmdSpoolDir={p["spool"]}
SlurmctldPidFile={_pidfile(d, "slurmctld")}
SlurmdPidFile={_pidfile(d, "slurmd")}
SlurmctldLogFile={p["log"] / "slurmctld.log"}
SlurmdLogFile={p["log"] / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MpiDefault=none
ReturnToService=2
KillWait=2
InactiveLimit=0
MinJobAge=5
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports["slurmdbd"]}
# The MUNGE socket used to reach slurmdbd (clients default to /run/munge otherwise).
AccountingStoragePass={p["munge_sock"]}
AccountingStorageEnforce=associations
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _slurmdbd_conf(d: Path, ports: dict[str, int], db_password: str) -> str:
    p = _paths(d)
    return f"""# Generated by nemotron.testing.slurm; must stay mode 600.
AuthType=auth/munge
AuthInfo=socket={p["munge_sock"]}
DbdHost={NODE}
DbdAddr=127.0.0.1
DbdPort={ports["slurmdbd"]}
SlurmUser=root
LogFile={p["log"] / "slurmdbd.log"}
PidFile={_pidfile(d, "slurmdbd")}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports["mysql"]}
StorageUser=slurm
StoragePass={db_password}
StorageLoc=slurm_acct_db
"""


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _prepare(d: Path) -> dict:
    """Create folders, the MUNGE key and the configs; return cluster.json's content."""
    p = _paths(d)
    for key in ("state", "spool", "log", "run", "db"):
        p[key].mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    os.chmod(p["run"], 0o755)  # munged wants its socket folder readable and not writable by all
    (d / "munge").mkdir(mode=0o700, exist_ok=True)
    os.chmod(d / "munge", 0o700)
    if not p["key"].exists():
        _write(p["key"], "", 0o600)
        p["key"].write_bytes(secrets.token_bytes(1024))
        os.chmod(p["key"], 0o400)
    for sock in ("munge_sock", "mysql_sock"):
        if len(str(p[sock])) > 100:
            raise ClusterError(
                f"cluster folder {d} is too long for a unix socket path; use a shorter DIR"
            )
    try:
        meta = json.loads(p["meta"].read_text())
    except (OSError, ValueError):
        meta = {}
    meta.setdefault("db_password", secrets.token_hex(12))
    meta["ports"] = _pick_ports(d, meta.get("ports", {}), daemon_pids(d))
    meta["cluster"] = CLUSTER_NAME
    _write(p["meta"], json.dumps(meta, indent=2) + "\n", 0o600)
    _write(p["conf"], _slurm_conf(d, meta["ports"]), 0o644)
    _write(p["dbdconf"], _slurmdbd_conf(d, meta["ports"], meta["db_password"]), 0o600)
    return meta


# ---------------------------------------------------------------------------------------------
# starting


def _spawn(argv: list[str], d: Path, log_name: str, env: dict[str, str] | None = None) -> None:
    """Start a self-daemonizing program and wait for its launcher to return."""
    log = d / "log" / log_name
    with open(log, "ab") as out:
        done = subprocess.run(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, timeout=60,
            cwd=d, start_new_session=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` exited {done.returncode}\n{_tail(log)}")


def _start_munged(d: Path) -> None:
    p = _paths(d)
    p["munge_sock"].unlink(missing_ok=True)
    Path(str(p["munge_sock"]) + ".lock").unlink(missing_ok=True)
    _spawn(
        [
            "munged", "--force", f"--socket={p['munge_sock']}", f"--key-file={p['key']}",
            f"--pid-file={_pidfile(d, 'munged')}", f"--log-file={p['log'] / 'munged.log'}",
            f"--seed-file={p['seed']}", "--num-threads=10",
        ],
        d, "munged.out",
    )  # fmt: skip
    _wait("munged", lambda: p["munge_sock"].exists(), 10, p["log"] / "munged.log")


def _sql(d: Path, sql: str, database: str | None = None, check: bool = True) -> str:
    p = _paths(d)
    argv = ["mariadb", "--no-defaults", "-S", str(p["mysql_sock"]), "-uroot", "-N", "-B"]
    if database:
        argv.append(database)
    return _run([*argv, "-e", sql], check=check, timeout=30)


def _db_up(d: Path) -> bool:
    p = _paths(d)
    if not p["mysql_sock"].exists():
        return False
    try:
        return _sql(d, "SELECT 1").strip() == "1"
    except ClusterError:
        return False


def _mariadb_args(d: Path) -> list[str]:
    return [
        "--no-defaults", f"--datadir={_paths(d)['db']}", "--user=root",
        "--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M",
    ]  # fmt: skip


def _start_mariadb(d: Path, port: int, db_password: str) -> None:
    p = _paths(d)
    if not p["db_ready"].exists():
        shutil.rmtree(p["db"], ignore_errors=True)
        p["db"].mkdir()
        _run(
            ["mariadb-install-db", *_mariadb_args(d), "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            timeout=120,
        )  # fmt: skip
    p["mysql_sock"].unlink(missing_ok=True)
    _spawn(
        [
            "setsid", "-f", "mariadbd", *_mariadb_args(d), f"--socket={p['mysql_sock']}",
            f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
            f"--pid-file={_pidfile(d, 'mariadbd')}", f"--log-error={p['log'] / 'mariadbd.log'}",
        ],
        d, "mariadbd.out",
    )  # fmt: skip
    _wait("MariaDB", lambda: _db_up(d), 30, p["log"] / "mariadbd.log")
    if not p["db_ready"].exists():
        _sql(
            d,
            f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{db_password}'; "
            f"ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{db_password}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;",
        )
        p["db_ready"].write_text("ok\n")


def _sacctmgr(d: Path, *args: str, check: bool = True) -> str:
    return _run(["sacctmgr", *args], env=_client_env(d), check=check, timeout=30)


def _dbd_up(d: Path) -> bool:
    try:
        _sacctmgr(d, "-n", "-P", "show", "cluster", "format=cluster")
    except ClusterError:
        return False
    return True


def _register_accounts(d: Path) -> None:
    """Register the cluster, an account and root's association in one idempotent call."""
    spec = d / "etc" / "accounts.cfg"
    _write(
        spec,
        f"Cluster - '{CLUSTER_NAME}'\n"
        "Parent - 'root'\n"
        f"Account - '{ACCOUNT}':Description='nemotron tests':Organization='nemotron'\n"
        f"Parent - '{ACCOUNT}'\n"
        "User - 'root':DefaultAccount='root'\n",
        0o644,
    )
    _sacctmgr(d, "-i", "load", f"file={spec}")


def _ctld_up(d: Path) -> bool:
    out = _run(["scontrol", "ping"], env=_client_env(d), check=False, timeout=10)
    return "is UP" in out


def _node_state(d: Path) -> str:
    out = _run(["sinfo", "-h", "-N", "-o", "%T"], env=_client_env(d), check=False, timeout=10)
    return out.strip().lower()


def _node_ready(d: Path) -> bool:
    state = _node_state(d).rstrip("*~#!%$@^-")
    return state in ("idle", "mixed", "allocated", "completing")


def _start_slurm_daemon(d: Path, name: str, argv: list[str]) -> None:
    _spawn(argv, d, f"{name}.out", env=_client_env(d))


def cluster_running(dir: str | os.PathLike | None = None) -> bool:
    """True when every daemon of the cluster in ``dir`` runs and its node takes jobs."""
    d = Path(dir or default_dir()).absolute()
    if not (d / "etc" / "slurm.conf").exists():
        return False
    d = d.resolve()
    return all(daemon_pids(d).values()) and _ctld_up(d) and _node_ready(d)


def start_cluster(
    dir: str | os.PathLike | None = None,
    *,
    install: bool | None = None,
    fresh: bool = False,
    _retry: bool = True,
) -> Cluster:
    """Start (or find running) the one-node cluster in ``dir``; idempotent.

    Installs the Debian packages when missing and ``install`` (default: root or
    NEMOTRON_SLURM_INSTALL=1). ``fresh`` wipes controller state and database together. A start
    that fails on leftovers of a crashed run is retried once from a fresh state.
    """
    d = Path(dir or default_dir()).absolute()
    if os.geteuid() != 0:
        raise ClusterError("the local Slurm test cluster needs root (slurmd runs jobs as root)")
    ensure_installed(install)
    d.mkdir(parents=True, exist_ok=True)
    d = d.resolve()
    if fresh:
        stop_cluster(d)
        _wipe_state(d)
    before = daemon_pids(d)
    if cluster_running(d):
        meta = json.loads(_paths(d)["meta"].read_text())
        return Cluster(dir=d, ports=meta["ports"], started=False)
    _kill_strays(d, before)
    try:
        return _start(d)
    except ClusterError:
        if not _retry or fresh:
            raise
        print("slurm-cluster: start failed; wiping state and database, retrying", file=sys.stderr)
        return start_cluster(d, install=False, fresh=True, _retry=False)


def _kill_strays(d: Path, known: dict[str, int | None]) -> None:
    """Kill processes of this cluster that its pid files do not know (a crashed earlier run)."""
    ours = {pid for pid in known.values() if pid}
    strays = [pid for pid in _stray_pids(d, DAEMONS) if pid not in ours]
    _terminate(strays)


def _start(d: Path) -> Cluster:
    meta = _prepare(d)
    ports = meta["ports"]
    p = _paths(d)
    pids = daemon_pids(d)
    if not pids["munged"]:
        _start_munged(d)
    if not pids["mariadbd"]:
        _start_mariadb(d, ports["mysql"], meta["db_password"])
    if not pids["slurmdbd"]:
        _start_slurm_daemon(d, "slurmdbd", ["slurmdbd"])
    _wait("slurmdbd", lambda: _dbd_up(d), 30, p["log"] / "slurmdbd.log")
    _register_accounts(d)
    if not pids["slurmctld"]:
        _start_slurm_daemon(d, "slurmctld", ["slurmctld"])
    _wait("slurmctld", lambda: _ctld_up(d), 30, p["log"] / "slurmctld.log")
    if not pids["slurmd"]:
        _start_slurm_daemon(d, "slurmd", ["slurmd", "-N", NODE])
    resumed = False

    def node_ready() -> bool:
        nonlocal resumed
        state = _node_state(d)
        if not resumed and any(s in state for s in ("drain", "down", "inval", "fail")):
            _run(
                ["scontrol", "update", f"nodename={NODE}", "state=resume"],
                env=_client_env(d), check=False,
            )  # fmt: skip
            resumed = True
        return _node_ready(d)

    _wait("slurmd (node idle)", node_ready, 30, p["log"] / "slurmd.log")
    missing = [name for name, pid in daemon_pids(d).items() if not pid]
    if missing:
        raise ClusterError(f"daemons not running after start: {', '.join(missing)}")
    return Cluster(dir=d, ports=ports, started=True)


# ---------------------------------------------------------------------------------------------
# stopping


def _wipe_state(d: Path) -> None:
    p = _paths(d)
    for key in ("state", "spool", "db"):
        shutil.rmtree(p[key], ignore_errors=True)


def stop_cluster(dir: str | os.PathLike | None = None, *, purge: bool = False) -> None:
    """Cancel all jobs, stop every daemon and job process of the cluster in ``dir``.

    ``purge`` also deletes the folder. Safe to call on a stopped or half-started cluster.
    """
    d = Path(dir or default_dir()).absolute()
    if not d.exists():
        return
    d = d.resolve()
    pids = daemon_pids(d)
    if pids["slurmctld"] and _ctld_up(d):
        env = _client_env(d)
        jobs = _run(["squeue", "-h", "-o", "%A"], env=env, check=False).split()
        if jobs:
            _run(["scancel", *jobs], env=env, check=False)
            deadline = time.monotonic() + 8
            while (
                time.monotonic() < deadline
                and _run(
                    ["squeue", "-h", "-t", "running,completing", "-o", "%A"], env=env, check=False
                ).split()
            ):
                time.sleep(0.2)
    for name in DAEMONS:
        if pids[name]:
            _terminate([pids[name]], timeout=15)
    # Whatever is left (a crashed run's daemons, step daemons, job processes) by pid.
    _terminate(_stray_pids(d, (*DAEMONS, "slurmscriptd", "slurmstepd")))
    _terminate(_job_processes(d))
    for name in DAEMONS:
        _pidfile(d, name).unlink(missing_ok=True)
    if purge:
        shutil.rmtree(d, ignore_errors=True)


def _job_processes(d: Path) -> list[int]:
    """Processes started by jobs of this cluster: they carry its SLURM_CONF and a job id."""
    conf = f"SLURM_CONF={d / 'etc' / 'slurm.conf'} "
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        environ = _proc_text(int(entry), "environ") + " "
        if conf in environ and "SLURM_JOB_ID=" in environ and _alive(int(entry)):
            found.append(int(entry))
    return found


# ---------------------------------------------------------------------------------------------
# command line (scripts/slurm-cluster)


def _status_text(d: Path) -> tuple[bool, str]:
    pids = daemon_pids(d)
    lines = [f"cluster {d}"]
    for name in reversed(DAEMONS):
        lines.append(f"  {name:10} {'running pid ' + str(pids[name]) if pids[name] else 'stopped'}")
    up = all(pids.values())
    if pids["slurmctld"]:
        env = _client_env(d)
        lines.append(_run(["sinfo"], env=env, check=False).rstrip())
        queue = _run(["squeue"], env=env, check=False).rstrip()
        if queue:
            lines.append(queue)
    return up, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="slurm-cluster",
        description="A throwaway one-node Slurm cluster with accounting, entirely under DIR "
        "(needs root; installs the Debian packages when missing).",
        epilog="examples:\n  scripts/slurm-cluster up /tmp/slurm && eval "
        '"$(scripts/slurm-cluster env /tmp/slurm)" && sinfo\n'
        "  scripts/slurm-cluster down /tmp/slurm --purge",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "up": "start the cluster (idempotent)",
        "down": "cancel jobs and stop every daemon",
        "status": "show daemons, sinfo and squeue; exit 0 when up",
        "env": "print shell exports for clients (SLURM_CONF)",
    }
    cmds = {name: sub.add_parser(name, help=text) for name, text in helps.items()}
    for cmd in cmds.values():
        cmd.add_argument("dir", nargs="?", help=f"cluster folder (default: {default_dir()})")
    cmds["up"].add_argument(
        "--fresh", action="store_true", help="wipe controller state and database first"
    )
    cmds["up"].add_argument("--no-install", action="store_true", help="never run apt-get")
    cmds["down"].add_argument("--purge", action="store_true", help="also delete DIR")
    args = parser.parse_args(argv)
    d = Path(args.dir or default_dir()).absolute()
    try:
        if args.command == "up":
            began = time.monotonic()
            cluster = start_cluster(d, install=False if args.no_install else None, fresh=args.fresh)
            verb = "started" if cluster.started else "already running"
            print(f"slurm cluster {verb} in {time.monotonic() - began:.1f}s: {cluster.dir}")
            print(f"  export SLURM_CONF={cluster.conf}")
        elif args.command == "down":
            stop_cluster(d, purge=args.purge)
            print(f"slurm cluster stopped: {d}")
        elif args.command == "status":
            up, text = _status_text(d.resolve() if d.exists() else d)
            print(text)
            return 0 if up else 1
        elif args.command == "env":
            d = d.resolve()
            print(f"export SLURM_CONF={d / 'etc' / 'slurm.conf'}")
            print(f"export NEMOTRON_SLURM_DIR={d}")
    except ClusterError as exc:
        print(f"slurm-cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
