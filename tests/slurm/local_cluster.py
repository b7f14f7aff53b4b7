"""A throwaway one-node SLURM cluster for the tests, all of it in one folder:

    python tests/slurm/local_cluster.py start /tmp/cluster   # prints `export SLURM_CONF=...`
    SLURM_CONF=/tmp/cluster/slurm.conf sbatch ...             # sinfo, srun, squeue, sacct, scontrol
    python tests/slurm/local_cluster.py stop /tmp/cluster    # every daemon stopped by its PID

What it starts, as root (Debian's `slurm-wlm`, `slurmdbd`, `munge` and `mariadb-server`, which
`.ci/setup_slurm.sh` installs): munged (the authentication every daemon and command uses), MariaDB and
slurmdbd (job accounting, so that `sacct` works: submitit asks it whether a job has ended), slurmctld
and slurmd (one node: this machine, its CPUs; one partition, `debug`). Every configuration file, socket,
state, log and PID file is in the folder; the daemons listen on free ports, so a cluster of the machine's
own (ports 6817-6819, /run/munge) is left alone. slurmd runs in a CPU cgroup of its own, where the
kernel allows one, so that `cpu_quota` can slow the node's jobs down (see there). `stop` kills what the
PID files name, waits for each to end, and leaves no daemon running (and no cgroup); the folder stays,
with the daemons' logs, until removed.

`start` raises ClusterUnavailable (what is missing: root, a package) where a cluster cannot start.
Measured on Debian 12 with Slurm 22.05: a requeued job waits ~1 minute (its BeginTime) unless
`scontrol update jobid=N starttime=now`; a batch script sees SLURM_NTASKS but no SLURM_STEP_NUM_TASKS.
"""
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")  # the order `stop` stops them in
PROGRAMS = {"munged": "munge", "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
            "slurmdbd": "slurmdbd", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sacctmgr": "slurm-wlm"}
PARTITION = "debug"
CLUSTER = "liiftest"


class ClusterUnavailable(Exception):
    """A SLURM cluster cannot start on this machine (the reason is the message)."""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _which(program):
    for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if os.access(os.path.join(folder, program), os.X_OK):
            return os.path.join(folder, program)
    return shutil.which(program)


def check_available():
    """Raise ClusterUnavailable unless this process can start the cluster."""
    if sys.platform != "linux" or os.geteuid() != 0:
        raise ClusterUnavailable("the local SLURM cluster starts its daemons as root (run the tests as root, as CI does)")
    missing = sorted({package for program, package in PROGRAMS.items() if _which(program) is None})
    if missing:
        raise ClusterUnavailable(f"SLURM is not installed: apt-get install {' '.join(missing)} (.ci/setup_slurm.sh)")


def environment(folder):
    """The environment for SLURM's commands (sbatch, srun, sacct ...) on the cluster in `folder`."""
    return {**os.environ, "SLURM_CONF": str(Path(folder) / "slurm.conf")}


def _run(command, folder, **kwargs):
    return subprocess.run(command, env=environment(folder), capture_output=True, text=True, timeout=120, **kwargs)


def _wait_for(what, condition, folder, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(Path(folder).glob("*.log")))
    raise ClusterUnavailable(f"{what} did not come up within {seconds} s\n{logs}")


def _pid(folder, daemon):
    try:
        return int((Path(folder) / f"{daemon}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child, exited) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def node_name():
    """This machine's short host name, which slurmd takes as its node's name and srun's tasks as the
    master's address; `localhost` where the name does not resolve (a container's made-up host name)."""
    host = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(host)
        return host
    except OSError:
        return "localhost"


def write_config(folder, cpus, memory_mb, ports):
    """slurm.conf, slurmdbd.conf and the munge key in `folder`. The timings are short so that the tests
    see time limits and requeues within seconds: KillWait (SIGTERM to SIGKILL) 10 s, a finished job's
    record kept for 600 s."""
    folder = Path(folder)
    ctld_port, slurmd_port, dbd_port, db_port = ports
    host = node_name()
    key = folder / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    os.chmod(key, 0o400)
    (folder / "spool").mkdir(exist_ok=True)
    (folder / "state").mkdir(exist_ok=True)
    # every connection authenticates through this folder's munged; the one to slurmdbd names it again
    auth = f"AuthType=auth/munge\nAuthInfo=socket={folder / 'munge.socket'}\n"
    (folder / "slurm.conf").write_text(
        f"ClusterName={CLUSTER}\nSlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)\nSlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n"
        f"{auth}SlurmUser=root\nSlurmdUser=root\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
        "SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nMpiDefault=none\n"
        "ReturnToService=2\nKillWait=10\nMinJobAge=600\nInactiveLimit=0\nWaitTime=0\n"
        f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
        f"AccountingStoragePort={dbd_port}\nAccountingStoragePass={folder / 'munge.socket'}\nMailProg=/bin/true\n"
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}\nSlurmdPidFile={folder / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={folder / 'slurmctld.log'}\nSlurmdLogFile={folder / 'slurmd.log'}\n"
        f"SlurmdSpoolDir={folder / 'spool'}\nStateSaveLocation={folder / 'state'}\n"
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN\n"
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP\n")
    dbd = folder / "slurmdbd.conf"
    dbd.write_text(f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={dbd_port}\nSlurmUser=root\n"
                   f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={db_port}\n"
                   "StorageUser=root\nStorageLoc=slurm_acct_db\n"
                   f"PidFile={folder / 'slurmdbd.pid'}\nLogFile={folder / 'slurmdbd.log'}\n")
    os.chmod(dbd, 0o600)  # slurmdbd refuses a config others can read (it may hold the database password)


def start(folder, cpus=None, memory_mb=None):
    """Start the cluster in `folder` (created; must not hold a running one). Returns the environment
    for SLURM's commands. On failure every daemon started is stopped again."""
    check_available()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)  # munged refuses a socket folder others can write to
    if any(_alive(_pid(folder, d)) for d in DAEMONS):
        raise ClusterUnavailable(f"a cluster already runs in {folder}: stop it first")
    ports = _free_ports(4)
    cpus = cpus or os.cpu_count()
    memory_mb = memory_mb or 4000
    write_config(folder, cpus, memory_mb, ports)
    env = environment(folder)
    try:
        subprocess.run([_which("munged"), "--force", f"--socket={folder / 'munge.socket'}", f"--key-file={folder / 'munge.key'}",
                        f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                        f"--seed-file={folder / 'munged.seed'}"], check=True, capture_output=True, timeout=60)
        _start_database(folder, ports[3])
        subprocess.run([_which("slurmdbd")], env=env, check=True, capture_output=True, timeout=60)
        _wait_for("slurmdbd", lambda: _connects(ports[2]), folder)
        _run(["sacctmgr", "-i", "add", "cluster", CLUSTER], folder)
        subprocess.run([_which("slurmctld"), "-c"], env=env, check=True, capture_output=True, timeout=60)
        _wait_for("slurmctld", lambda: _run(["scontrol", "ping"], folder).stdout.count("UP") > 0, folder)
        subprocess.run([_which("slurmd"), "-N", node_name()], env=env, check=True, capture_output=True, timeout=60)
        _wait_for("the node", lambda: _run(["sinfo", "-h", "-o", "%T"], folder).stdout.strip() == "idle", folder)
        _confine_the_node(folder)
    except (subprocess.SubprocessError, OSError) as e:
        stop(folder)
        detail = getattr(e, "stderr", b"") or b""
        raise ClusterUnavailable(f"the cluster did not start: {e} {detail.decode(errors='replace')[-2000:]}") from e
    except ClusterUnavailable:
        stop(folder)
        raise
    return env


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _start_database(folder, port):
    data, tmp = folder / "db", folder / "db-tmp"
    # its own temporary folder: two clusters at once (two test sessions) each setting up MariaDB in /tmp
    # lost each other's temporary tables ("Unknown table 'mysql.tmp_user_sys'") and did not start
    tmp.mkdir(exist_ok=True)
    if not (data / "mysql").is_dir():
        subprocess.run([_which("mariadb-install-db"), f"--datadir={data}", "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=normal", f"--tmpdir={tmp}"], check=True, capture_output=True, timeout=300)
    log = open(folder / "mariadb.log", "ab")
    subprocess.Popen([_which("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root", "--bind-address=127.0.0.1",
                      f"--port={port}", f"--socket={folder / 'mariadb.socket'}", f"--pid-file={folder / 'mariadbd.pid'}",
                      f"--tmpdir={tmp}", "--skip-name-resolve", "--innodb-buffer-pool-size=32M"],
                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_for("MariaDB", lambda: _connects(port) and _pid(folder, "mariadbd") is not None, folder)
    # root may connect over TCP from 127.0.0.1 (slurmdbd has no socket setting), without a password: the
    # database listens on the loopback only, for this throwaway cluster
    subprocess.run(["mariadb", "--no-defaults", f"--socket={folder / 'mariadb.socket'}", "-uroot", "-e",
                    "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1';"],
                   check=True, capture_output=True, timeout=60)


# The node's CPU cgroup: slurmd is moved into it at start, so every job step it forks is in it too, and
# `cpu_quota` can make the node's jobs slow without making them costly: a test of SLURM's time limit
# needs a job that is still running a minute after it started, not a minute of CPU. cgroup v1's `cpu`
# hierarchy or cgroup v2 with the `cpu` controller enabled at the root; none where neither is writable.
_CGROUP_V1, _CGROUP_V2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")


def _node_cgroup(folder):
    name = "liif-test-slurm-" + hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:12]
    if (_CGROUP_V1 / "cpu.cfs_quota_us").exists():
        return _CGROUP_V1 / name
    controllers = _CGROUP_V2 / "cgroup.subtree_control"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return _CGROUP_V2 / name
    return None


def _confine_the_node(folder):
    cgroup = _node_cgroup(folder)
    if cgroup is None:
        return
    try:
        cgroup.mkdir(exist_ok=True)
        (cgroup / "cgroup.procs").write_text(str(_pid(folder, "slurmd")))
    except OSError:  # a read-only cgroup file system (a container): the node runs unconfined
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def _free_the_node(folder):
    """Move what is left in the node's cgroup to the root and remove it (an empty folder of the kernel's)."""
    cgroup = _node_cgroup(folder)
    if cgroup is None or not cgroup.is_dir():
        return
    for pid in (cgroup / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            (cgroup.parent / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        cgroup.rmdir()


@contextlib.contextmanager
def cpu_quota(folder, cores):
    """While inside, the jobs of the cluster in `folder` together get at most `cores` CPUs (0.25: a
    quarter of one) from the kernel's scheduler. Yields False, and limits nothing, where the node
    could not be put in a CPU cgroup."""
    if not cores > 0:  # the kernel takes any negative quota for "no limit"
        raise ValueError(f"cores must be more than 0, not {cores}")
    cgroup = _node_cgroup(folder)
    if cgroup is None or not (cgroup / "cgroup.procs").exists():
        yield False
        return
    period = 100_000  # microseconds
    if cgroup.parent == _CGROUP_V1:
        limit, unlimited, quota = cgroup / "cpu.cfs_quota_us", "-1", str(int(cores * period))
    else:
        limit, unlimited, quota = cgroup / "cpu.max", f"max {period}", f"{int(cores * period)} {period}"
    try:
        limit.write_text(quota)
    except OSError:  # a cgroup that takes processes but no limit
        yield False
        return
    try:
        yield True
    finally:
        limit.write_text(unlimited)


def stop(folder, seconds=30):
    """Stop every daemon of the cluster in `folder` by its PID file (SIGTERM, then SIGKILL after
    `seconds`) and wait until each has ended. Returns the names of those that were running."""
    folder = Path(folder)
    stopped = []
    for daemon in DAEMONS:
        pid = _pid(folder, daemon)
        if not _alive(pid):
            continue
        stopped.append(daemon)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
    _free_the_node(folder)
    return stopped


def running(folder):
    """The daemons of the cluster in `folder` that are running."""
    return [d for d in DAEMONS if _alive(_pid(folder, d))]


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: python tests/slurm/local_cluster.py start|stop FOLDER")
    if sys.argv[1] == "start":
        try:
            start(sys.argv[2])
        except ClusterUnavailable as e:
            sys.exit(f"error: {e}")
        print(f"export SLURM_CONF={Path(sys.argv[2]).resolve() / 'slurm.conf'}")
    else:
        print("stopped:", ", ".join(stop(sys.argv[2])) or "nothing was running")
