"""A throwaway Slurm cluster (with accounting) of 1 or 2 nodes that lives in one folder.

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
    etc/hosts           the cluster's host names (bind-mounted over /etc/hosts on its hosts)
    ssh/                the login node's host key and the one key it accepts
    cluster-fs/         the cluster's own files (job_dir, artifacts of the SSH tests)
    laptop/             files only the laptop side sees (hidden on every cluster host): its
                        key (id_ed25519), its ~/.ssh, its own view of cluster-fs/

The network: a bridge in this machine's namespace holds the controller's address (``.1`` of a
private /24 derived from ``DIR``, checked free); every slurmd (``node1``, ``node2``) and the
login node's sshd (``login``) run in their own network, UTS and mount namespace with their own
address and hostname, and no route anywhere else. ``down`` deletes the namespaces and the
bridge, also after a crash.

Facts this relies on (probed on Debian 12, Slurm 22.05): slurmd/slurmctld run as root with
proctrack/linuxproc, task/none, no cgroups; ``slurmd -N localhost``; slurmdbd reads
``slurmdbd.conf`` from the folder of SLURM_CONF and refuses it unless mode 600; clients reach
slurmdbd through the MUNGE socket named by ``AccountingStoragePass`` (not ``AuthInfo``); the
controller state and the accounting database must be wiped together (job ids restart at 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = (
    "slurmctld", "slurmd", "slurm-client", "slurmdbd", "munge", "mariadb-server",
    "openssh-server", "openssh-client", "rsync", "iproute2",
)  # fmt: skip
BINARIES = (
    "slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "sacctmgr", "scontrol", "squeue",
    "munged", "mariadbd", "mariadb-install-db", "mariadb", "sshd", "ssh", "ssh-keygen", "rsync",
    "ip", "unshare",
)  # fmt: skip
# Stopped in this order (dependents first); started in the reverse order. The slurmd of every
# node has its own pid file (slurmd-<node>.pid).
DAEMONS = ("sshd", "slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")
CLUSTER_NAME = "nemotron"
ACCOUNT = "nemotron"
PARTITION = "debug"
CONTROLLER = "localhost"  # Slurm accepts this name for the controller on any host
LOGIN = "login"
MAX_NODES = 2
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
    nodes: list[str] = field(default_factory=lambda: ["node1"])
    login: bool = False  # an sshd as the login node (``login_host``)

    @property
    def addresses(self) -> dict[str, str]:
        """Every host of the cluster by name: ``ctl`` (this machine), ``login``, the nodes."""
        return _addresses(self.dir, len(self.nodes))

    @property
    def login_host(self) -> str:
        return self.addresses[LOGIN]

    @property
    def ssh_key(self) -> Path:
        """The laptop's private key (in its own folder), the only one the login node accepts."""
        return self.dir / "laptop" / "id_ed25519"

    @property
    def cluster_fs(self) -> Path:
        """The cluster's own files; the laptop side never sees them (see ``as_laptop``)."""
        return self.dir / "cluster-fs"

    @property
    def laptop_dir(self) -> Path:
        """Files only the laptop side sees: hidden (an empty tmpfs) on every cluster host."""
        return self.dir / "laptop"

    def as_laptop(self, argv: list[str]) -> list[str]:
        """``argv`` run as the laptop. Its view of ``cluster_fs`` is its own folder
        (``laptop/cluster-fs``: empty unless the laptop syncs something there), and its
        ``~/.ssh`` is its own (``laptop/ssh``: known_hosts), so this machine's is never read or
        written (an empty ``~/.ssh`` is created where there is none, to mount on)."""
        import pwd

        ssh_dir = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"  # where ssh looks
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        own_ssh, own_view = self.laptop_dir / "ssh", self.laptop_dir / "cluster-fs"
        for folder in (own_ssh, own_view):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        q = shlex.quote
        script = (
            f"mount --bind {q(str(own_view))} {q(str(self.cluster_fs))}"
            f" && mount --bind {q(str(own_ssh))} {q(str(ssh_dir))} && exec \"$@\""
        )
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "laptop",
                *argv]  # fmt: skip

    def on_node(self, node: str, argv: list[str]) -> list[str]:
        """``argv`` run on cluster host ``node`` (its network, hostname and file tree)."""
        return ["nsenter", f"--target={self._host_pid(node)}", "--net", "--uts", "--mount", *argv]

    def _host_pid(self, node: str) -> int:
        pid = daemon_pids(self.dir).get("sshd" if node == LOGIN else f"slurmd-{node}")
        if not pid:
            raise ClusterError(f"{node} is not running")
        return pid

    @contextlib.contextmanager
    def link_down(self, host: str) -> Iterator[None]:
        """The network link of cluster host ``host`` is down inside the block (a dropped
        connection, a node unreachable), and up again after it."""
        veth = _veth(self.dir, _hosts(self.dir, len(self.nodes)).index(host))
        _run(["ip", "link", "set", veth, "down"])
        try:
            yield
        finally:
            _run(["ip", "link", "set", veth, "up"])

    def kill_node(self, node: str) -> None:
        """The node dies: SIGKILL everything running on it (slurmd, job steps, the job's
        processes). The controller notices within SlurmdTimeout and requeues its jobs."""
        netns = _netns(self.dir, node)
        pids = [int(p) for p in _run(["ip", "netns", "pids", netns], check=False).split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def start_node(self, node: str) -> None:
        """Start a node's slurmd again (after ``kill_node``) and wait until it takes jobs."""
        _start_slurmd(self.dir, node)
        self.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
        _wait(f"{node} to take jobs", lambda: _node_ready(self.dir, [node]), 60)

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


def _meta(d: Path) -> dict:
    try:
        return json.loads((d / "cluster.json").read_text())
    except (OSError, ValueError):
        return {}


def _node_names(count: int) -> list[str]:
    return [f"node{i}" for i in range(1, count + 1)]


def _daemons(d: Path) -> list[tuple[str, str]]:
    """(key, program) of every daemon of cluster ``d``, dependents first: one slurmd per node."""
    meta = _meta(d)
    found = []
    for name in DAEMONS:
        if name == "sshd":
            if meta.get("login"):
                found.append(("sshd", "sshd"))
        elif name == "slurmd":
            found += [(f"slurmd-{node}", "slurmd") for node in _node_names(meta.get("nodes", 1))]
        else:
            found.append((name, name))
    return found


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
    if f"{d}/run/" in cmdline or f"--datadir={d}/db " in cmdline or f"{d}/etc/" in cmdline:
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
    found: dict[str, int | None] = {}
    for key, program in _daemons(d):
        found[key] = None
        try:
            pid = int(_pidfile(d, key).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _alive(pid) and _comm(pid) == program and _belongs(pid, d):
            found[key] = pid
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
# the network: a bridge here, one namespace per cluster host


def _tag(d: Path) -> str:
    return f"{zlib.crc32(str(d).encode()):08x}"[:6]


def _netns(d: Path, host: str) -> str:
    return f"nmt{_tag(d)}-{host}"


def _bridge(d: Path) -> str:
    return f"nmt{_tag(d)}br"


def _veth(d: Path, index: int) -> str:
    return f"nmt{_tag(d)}v{index}"  # at most 15 characters, as Linux wants


def _subnet(d: Path) -> str:
    """The cluster's private /24 (``10.213.C``), kept in cluster.json; chosen from ``DIR`` and
    never one this machine already routes anywhere else."""
    kept = _meta(d).get("subnet")
    if kept:
        return kept
    routes = _run(["ip", "-4", "route", "show"], check=False)
    start = zlib.crc32(str(d).encode()) % 250
    for step in range(250):
        net = f"10.213.{(start + step) % 250 + 1}"
        if f"{net}." not in routes:
            return net
    raise ClusterError("no free 10.213.x.0/24 subnet for the test cluster")


def _addresses(d: Path, nodes: int) -> dict[str, str]:
    net = _subnet(d)
    found = {"ctl": f"{net}.1", LOGIN: f"{net}.2"}
    found.update({node: f"{net}.{10 + i}" for i, node in enumerate(_node_names(nodes), 1)})
    return found


def _hosts(d: Path, nodes: int) -> list[str]:
    """The hosts that get a namespace: the nodes, then the login node."""
    return [*_node_names(nodes), LOGIN]


def _link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return subprocess.run([*prefix, "link", "show", name], capture_output=True).returncode == 0


def _net_up(d: Path, nodes: int) -> None:
    """Create (or complete) the bridge and one namespace per host, each with its address."""
    addresses = _addresses(d, nodes)
    bridge = _bridge(d)
    if not _link_exists(bridge):
        _run(["ip", "link", "add", bridge, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{addresses['ctl']}/24", "dev", bridge])
    _run(["ip", "link", "set", bridge, "up"])
    existing = _run(["ip", "netns", "list"], check=False)
    for index, host in enumerate(_hosts(d, nodes)):
        netns, veth = _netns(d, host), _veth(d, index)
        if netns not in existing.split():
            _run(["ip", "netns", "add", netns])
        if not _link_exists("eth0", netns):
            _run(["ip", "link", "del", veth], check=False)
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                  netns])  # fmt: skip
        _run(["ip", "link", "set", veth, "master", bridge, "up"])
        _run(["ip", "-n", netns, "addr", "replace", f"{addresses[host]}/24", "dev", "eth0"])
        _run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])


def _our_netns(d: Path) -> list[str]:
    prefix = f"nmt{_tag(d)}-"
    listing = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in listing.splitlines() if line.startswith(prefix)]


def _net_down(d: Path) -> None:
    """Kill whatever still runs in the cluster's namespaces, delete them and the bridge."""
    for netns in _our_netns(d):
        pids = [int(p) for p in _run(["ip", "netns", "pids", netns], check=False).split()]
        _terminate([p for p in pids if p != os.getpid()], timeout=5)
        _run(["ip", "netns", "del", netns], check=False)
    if _link_exists(_bridge(d)):
        _run(["ip", "link", "del", _bridge(d)], check=False)


def _in_host(d: Path, host: str, command: str) -> list[str]:
    """``command`` (shell) as host ``host``: its namespace, hostname, /etc/hosts, the laptop's
    folder hidden under an empty tmpfs, and ``cluster-fs/readonly`` read-only (a folder a
    user cannot write, even as root)."""
    q = shlex.quote
    readonly = q(str(d / "cluster-fs" / "readonly"))
    script = (
        f"hostname {q(host)} && mount --bind {q(str(d / 'etc' / 'hosts'))} /etc/hosts"
        f" && mount -t tmpfs -o size=1m,mode=755 nemotron-hidden {q(str(d / 'laptop'))}"
        f" && mount --bind {readonly} {readonly} && mount -o remount,bind,ro {readonly}"
        f" && exec {command}"
    )
    # nsenter, not `ip netns exec`: that one mounts a fresh /sys without /sys/fs/cgroup, which
    # slurmd needs.
    return [
        "nsenter", f"--net=/run/netns/{_netns(d, host)}", "unshare", "--uts", "--mount",
        "--propagation", "private", "sh", "-c", script,
    ]  # fmt: skip


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


def _slurm_conf(d: Path, ports: dict[str, int], nodes: int) -> str:
    p = _paths(d)
    cpus, mem_mb = _node_resources()
    addresses = _addresses(d, nodes)
    names = _node_names(nodes)
    node_lines = "\n".join(
        f"NodeName={n} NodeAddr={addresses[n]} NodeHostname={n} CPUs={cpus} "
        f"RealMemory={mem_mb} State=UNKNOWN"
        for n in names
    )
    return f"""# Generated by nemotron.testing.slurm for a throwaway {nodes}-node test cluster.
ClusterName={CLUSTER_NAME}
SlurmctldHost={CONTROLLER}({addresses["ctl"]})
SlurmctldPort={ports["slurmctld"]}
SlurmdPort={ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={p["munge_sock"]}
CredType=cred/munge
StateSaveLocation={p["state"]}
SlurmdSpoolDir={p["spool"]}/%n
SlurmctldPidFile={_pidfile(d, "slurmctld")}
SlurmdPidFile={p["run"]}/slurmd-%n.pid
SlurmctldLogFile={p["log"] / "slurmctld.log"}
SlurmdLogFile={p["log"]}/slurmd-%n.log
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
SlurmdTimeout=30
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={addresses["ctl"]}
AccountingStoragePort={ports["slurmdbd"]}
# The MUNGE socket used to reach slurmdbd (clients default to /run/munge otherwise).
AccountingStoragePass={p["munge_sock"]}
AccountingStorageEnforce=associations
{node_lines}
PartitionName={PARTITION} Nodes={",".join(names)} Default=YES MaxTime=INFINITE State=UP
"""


def _slurmdbd_conf(d: Path, ports: dict[str, int], db_password: str) -> str:
    p = _paths(d)
    return f"""# Generated by nemotron.testing.slurm; must stay mode 600.
AuthType=auth/munge
AuthInfo=socket={p["munge_sock"]}
DbdHost={CONTROLLER}
DbdAddr={_addresses(d, 1)["ctl"]}
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


def _sshd_config(d: Path) -> str:
    ssh = d / "ssh"
    return f"""# Generated by nemotron.testing.slurm: the test cluster's login node.
ListenAddress {_addresses(d, 1)[LOGIN]}
Port 22
HostKey {ssh / "host_ed25519"}
PidFile {_pidfile(d, "sshd")}
AuthorizedKeysFile {ssh / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
# What a login node's /etc/slurm provides: the Slurm clients find the cluster.
SetEnv SLURM_CONF={d / "etc" / "slurm.conf"}
Subsystem sftp internal-sftp
"""


def _prepare_ssh(d: Path) -> None:
    """The login node's host key, and the laptop's key pair (the only one it accepts)."""
    ssh = d / "ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    for key in (ssh / "host_ed25519", d / "laptop" / "id_ed25519"):
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"nemotron-test-{key.name}",
                  "-f", str(key)])  # fmt: skip
    _write(ssh / "authorized_keys", (d / "laptop" / "id_ed25519.pub").read_text(), 0o600)
    _write(d / "etc" / "sshd_config", _sshd_config(d), 0o600)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _prepare(d: Path, nodes: int, login: bool) -> dict:
    """Create folders, the MUNGE key and the configs; return cluster.json's content."""
    p = _paths(d)
    for key in ("state", "spool", "log", "run", "db"):
        p[key].mkdir(parents=True, exist_ok=True)
    for folder in ("cluster-fs", "laptop", "cluster-fs/readonly"):
        (d / folder).mkdir(exist_ok=True)
        os.chmod(d / folder, 0o755)
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
    meta["subnet"] = _subnet(d)
    meta["nodes"], meta["login"] = nodes, login
    _write(p["meta"], json.dumps(meta, indent=2) + "\n", 0o600)
    hosts = "".join(f"{addr} {name}\n" for name, addr in _addresses(d, nodes).items())
    _write(d / "etc" / "hosts", f"127.0.0.1 localhost\n{hosts}", 0o644)
    _write(p["conf"], _slurm_conf(d, meta["ports"], nodes), 0o644)
    if login:
        _prepare_ssh(d)
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


def _node_states(d: Path) -> dict[str, str]:
    out = _run(["sinfo", "-h", "-N", "-o", "%N %T"], env=_client_env(d), check=False, timeout=10)
    found = {}
    for line in out.splitlines():
        if len(line.split()) == 2:
            name, state = line.split()
            found[name] = state.lower().rstrip("*~#!%$@^-")
    return found


def _node_ready(d: Path, nodes: list[str] | None = None) -> bool:
    states = _node_states(d)
    wanted = nodes or _node_names(_meta(d).get("nodes", 1))
    return all(states.get(n) in ("idle", "mixed", "allocated", "completing") for n in wanted)


def _start_slurm_daemon(d: Path, name: str, argv: list[str]) -> None:
    _spawn(argv, d, f"{name}.out", env=_client_env(d))


def _start_slurmd(d: Path, node: str) -> None:
    _spawn(_in_host(d, node, f"slurmd -N {node}"), d, f"slurmd-{node}.out", env=_client_env(d))


def _start_sshd(d: Path) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    conf = shlex.quote(str(d / "etc" / "sshd_config"))
    _spawn(_in_host(d, LOGIN, f"/usr/sbin/sshd -f {conf}"), d, "sshd.out")
    address = _addresses(d, 1)[LOGIN]

    def listening() -> bool:
        try:
            with socket.create_connection((address, 22), timeout=1):
                return True
        except OSError:
            return False

    _wait("sshd (the login node)", listening, 20, d / "log" / "sshd.out")


def cluster_running(
    dir: str | os.PathLike | None = None, *, nodes: int | None = None, login: bool = False
) -> bool:
    """True when every daemon of the cluster in ``dir`` runs and its nodes take jobs (with
    ``nodes``: that many; with ``login``: its login node too)."""
    d = Path(dir or default_dir()).absolute()
    if not (d / "etc" / "slurm.conf").exists():
        return False
    d = d.resolve()
    meta = _meta(d)
    if nodes is not None and meta.get("nodes", 1) != nodes or login and not meta.get("login"):
        return False
    return all(daemon_pids(d).values()) and _ctld_up(d) and _node_ready(d)


def start_cluster(
    dir: str | os.PathLike | None = None,
    *,
    nodes: int | None = None,
    login: bool = False,
    install: bool | None = None,
    fresh: bool = False,
    _retry: bool = True,
) -> Cluster:
    """Start (or find running) the cluster of ``nodes`` nodes in ``dir``; idempotent.

    ``nodes`` defaults to what the folder's cluster had, else 1; ``login`` adds an sshd as
    the login node (kept once added). A cluster running with another node count is stopped
    and started again from a fresh state. Installs the Debian packages when missing and
    ``install`` (default: root or NEMOTRON_SLURM_INSTALL=1). ``fresh`` wipes controller state and
    database together. A start that fails on leftovers of a crashed run is retried once from a
    fresh state.
    """
    d = Path(dir or default_dir()).absolute()
    nodes = nodes or _meta(d).get("nodes") or 1
    if not 1 <= nodes <= MAX_NODES:
        raise ClusterError(f"the test cluster has 1 to {MAX_NODES} nodes, not {nodes}")
    if os.geteuid() != 0:
        raise ClusterError("the local Slurm test cluster needs root (slurmd runs jobs as root)")
    ensure_installed(install)
    d.mkdir(parents=True, exist_ok=True)
    d = d.resolve()
    login = login or bool(_meta(d).get("login"))
    if _meta(d).get("nodes", nodes) != nodes:
        fresh = True
    if fresh:
        stop_cluster(d)
        _wipe_state(d)
    before = daemon_pids(d)
    if cluster_running(d, nodes=nodes, login=login):
        return Cluster(dir=d, ports=_meta(d)["ports"], started=False, nodes=_node_names(nodes),
                       login=login)  # fmt: skip
    _kill_strays(d, before)
    try:
        return _start(d, nodes, login)
    except ClusterError:
        if not _retry or fresh:
            raise
        print("slurm-cluster: start failed; wiping state and database, retrying", file=sys.stderr)
        return start_cluster(d, nodes=nodes, login=login, install=False, fresh=True, _retry=False)


def _kill_strays(d: Path, known: dict[str, int | None]) -> None:
    """Kill processes of this cluster that its pid files do not know (a crashed earlier run)."""
    ours = {pid for pid in known.values() if pid}
    strays = [pid for pid in _stray_pids(d, DAEMONS) if pid not in ours]
    _terminate(strays)


def _start(d: Path, nodes: int, login: bool) -> Cluster:
    meta = _prepare(d, nodes, login)
    ports = meta["ports"]
    p = _paths(d)
    _net_up(d, nodes)
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
    names = _node_names(nodes)
    for node in names:
        if not pids[f"slurmd-{node}"]:
            _start_slurmd(d, node)
    if login and not pids.get("sshd"):
        _start_sshd(d)
    resumed: set[str] = set()

    def nodes_ready() -> bool:
        for node, state in _node_states(d).items():
            if node not in resumed and any(s in state for s in ("drain", "down", "inval", "fail")):
                _run(
                    ["scontrol", "update", f"nodename={node}", "state=resume"],
                    env=_client_env(d), check=False,
                )  # fmt: skip
                resumed.add(node)
        return _node_ready(d, names)

    _wait(f"slurmd on {', '.join(names)} (nodes idle)", nodes_ready, 30,
          p["log"] / f"slurmd-{names[-1]}.log")  # fmt: skip
    missing = [name for name, pid in daemon_pids(d).items() if not pid]
    if missing:
        raise ClusterError(f"daemons not running after start: {', '.join(missing)}")
    return Cluster(dir=d, ports=ports, started=True, nodes=names, login=login)


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
    if pids.get("slurmctld") and _ctld_up(d):
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
    for pid in pids.values():
        if pid:
            _terminate([pid], timeout=15)
    # Whatever is left (a crashed run's daemons, step daemons, job processes, ssh sessions) by
    # pid, then the namespaces and the bridge.
    _terminate(_stray_pids(d, (*DAEMONS, "slurmscriptd", "slurmstepd")))
    _terminate(_job_processes(d))
    _net_down(d)
    for name in pids:
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
    addresses = _addresses(d, _meta(d).get("nodes", 1)) if _meta(d) else {}
    for name, pid in reversed(pids.items()):
        host = name.partition("-")[2] or (LOGIN if name == "sshd" else "ctl")
        where = f" on {host} ({addresses[host]})" if host in addresses else ""
        lines.append(f"  {name:13} {'running pid ' + str(pid) if pid else 'stopped'}{where}")
    up = all(pids.values())
    if pids.get("slurmctld"):
        env = _client_env(d)
        lines.append(_run(["sinfo"], env=env, check=False).rstrip())
        queue = _run(["squeue"], env=env, check=False).rstrip()
        if queue:
            lines.append(queue)
    return up, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="slurm-cluster",
        description="A throwaway Slurm cluster of 1 or 2 nodes (each in its own network "
        "namespace) with accounting and an optional SSH login node, entirely under DIR (needs "
        "root; installs the Debian packages when missing).",
        epilog="examples:\n  scripts/slurm-cluster up /tmp/slurm --nodes 2 && eval "
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
        "install": "install the Debian packages the cluster needs (when missing)",
    }
    cmds = {name: sub.add_parser(name, help=text) for name, text in helps.items()}
    for cmd in cmds.values():
        cmd.add_argument("dir", nargs="?", help=f"cluster folder (default: {default_dir()})")
    cmds["up"].add_argument(
        "--fresh", action="store_true", help="wipe controller state and database first"
    )
    cmds["up"].add_argument("--no-install", action="store_true", help="never run apt-get")
    cmds["up"].add_argument("--nodes", type=int, choices=range(1, MAX_NODES + 1),
                            help="compute nodes, each with its own address and hostname "
                            "(default: as before, else 1)")
    cmds["up"].add_argument("--login", action="store_true",
                            help="an sshd as the login node (key only; see docs/slurm.md)")
    cmds["down"].add_argument("--purge", action="store_true", help="also delete DIR")
    args = parser.parse_args(argv)
    d = Path(args.dir or default_dir()).absolute()
    try:
        if args.command == "up":
            began = time.monotonic()
            cluster = start_cluster(
                d, nodes=args.nodes, login=args.login, fresh=args.fresh,
                install=False if args.no_install else None,
            )  # fmt: skip
            verb = "started" if cluster.started else "already running"
            print(f"slurm cluster {verb} in {time.monotonic() - began:.1f}s: {cluster.dir}")
            print(f"  nodes: {', '.join(f'{n} ({cluster.addresses[n]})' for n in cluster.nodes)}")
            if cluster.login:
                print(f"  login: ssh -i {cluster.ssh_key} root@{cluster.login_host}")
            print(f"  export SLURM_CONF={cluster.conf}")
        elif args.command == "install":
            began = time.monotonic()
            ensure_installed(True)
            print(f"slurm-cluster: packages present ({time.monotonic() - began:.1f}s)")
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
