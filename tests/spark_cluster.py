"""A Spark standalone cluster on two hosts for tests: a master here, a worker in a network namespace.

The second host is a network namespace of the test's own, joined to this one by a veth pair on a
private /24 (10.213.N.0/24) no interface here uses. The master binds this side's address, the worker
the namespace's; a driver bound to this side's address reaches both. Everything the cluster starts
is stopped, and the namespace and the veth removed, however the test ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
SRC = Path(__file__).resolve().parents[1] / "src"
SUBNET_PREFIX = "10.213"
# A 2-core machine shared with others: one executor core, small heaps.
WORKER_CORES, WORKER_MEMORY, EXECUTOR_MEMORY, DAEMON_MEMORY = "1", "1g", "512m", "256m"
# Short-lived JVMs on a busy machine: the quick JIT only and one GC thread leave the cores to the work.
LIGHT_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
REGISTERED = "Successfully registered with master"
NAMESPACE_PREFIX = "fd-spark-"
PR_SET_PDEATHSIG = 1


@dataclass
class Cluster:
    """A running standalone cluster: where its master listens, the driver's address, its folders."""

    master_url: str
    driver_host: str
    worker_host: str
    work_dir: Path
    logs: Path

    def log(self, name: str) -> str:
        """Returns the last lines a daemon (master or worker) logged."""
        return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-40:])

    def executor_logs(self) -> list[Path]:
        """Lists the stderr files of the executors the worker ran (one folder per app and executor)."""
        return sorted(self.work_dir.glob("app-*/*/stderr"))


def unavailable_reason() -> str | None:
    """Says why this machine cannot host the two-host cluster (None when it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java for Spark's master and worker"
    probe = f"fdprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def run_ip(*args: str) -> None:
    """Runs one `ip` command, failing with its message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def free_subnet(start: int) -> ipaddress.IPv4Network:
    """Picks a 10.213.N.0/24 that no interface of this host has an address in."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    for step in range(254):
        network = ipaddress.ip_network(f"{SUBNET_PREFIX}.{(start + step) % 254 + 1}.0/24")
        if not any(address in used for address in (str(h) for h in list(network.hosts())[:2])):
            return network
    raise AssertionError(f"every {SUBNET_PREFIX}.N.0/24 is in use here")


def remove_stale_namespaces() -> None:
    """Removes the namespaces (and with them their veth pairs) of earlier runs whose process is gone."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for name in (line.split()[0] for line in listed.splitlines() if line.startswith(NAMESPACE_PREFIX)):
        pid = name.removeprefix(NAMESPACE_PREFIX)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def veth_namespace(stack: ExitStack) -> tuple[str, str, str]:
    """Creates a namespace joined by a veth pair, removed when the stack closes: (name, our IP, its IP)."""
    remove_stale_namespaces()
    tag = str(os.getpid())
    namespace, here, there = f"{NAMESPACE_PREFIX}{tag}", f"fdsp{tag}", f"fdsq{tag}"
    network = free_subnet(os.getpid())
    host_ip, worker_ip = (str(h) for h in list(network.hosts())[:2])
    run_ip("netns", "add", namespace)
    stack.callback(subprocess.run, ["ip", "netns", "del", namespace], capture_output=True, check=False)
    run_ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", namespace)
    # Removing the namespace removes both ends; this is for a namespace that could not be removed.
    stack.callback(subprocess.run, ["ip", "link", "del", here], capture_output=True, check=False)
    run_ip("addr", "add", f"{host_ip}/24", "dev", here)
    run_ip("link", "set", here, "up")
    run_ip("-n", namespace, "addr", "add", f"{worker_ip}/24", "dev", there)
    run_ip("-n", namespace, "link", "set", there, "up")
    run_ip("-n", namespace, "link", "set", "lo", "up")
    return namespace, host_ip, worker_ip


def free_port(host: str) -> int:
    """Asks the kernel for a free TCP port on one of the test's addresses."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def spark_env(local_ip: str) -> dict[str, str]:
    """The environment of a Spark process bound to local_ip, with this venv's Python everywhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "MASTER", "PYSPARK_GATEWAY_PORT")}
    return env | {
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": local_ip,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_DAEMON_JAVA_OPTS": LIGHT_JVM,
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(SRC),
    }


def stop_group(process: subprocess.Popen) -> None:
    """Stops a process started in its own session, and what it started (executors): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)
            return


# Looked up here, not in the forked child, where only the call itself is safe.
PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """Asks the kernel to kill this (child) process if the test process dies without cleaning up."""
    PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_daemon(stack: ExitStack, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Starts a Spark daemon in a session of its own, logging to a file; stopped when the stack closes."""
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
    stack.callback(stop_group, process)
    return process


def wait_for_registration(worker: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Waits until the worker's log says it joined the master."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if REGISTERED in log.read_text(errors="replace"):
            return
        assert worker.poll() is None, f"the worker exited:\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"the worker did not register in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def standalone_cluster(folder: Path) -> Iterator[Cluster]:
    """Runs a master on this side of a veth pair and a 1-core worker in a namespace behind it."""
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    with ExitStack() as stack:
        namespace, host_ip, worker_ip = veth_namespace(stack)
        master_url = f"spark://{host_ip}:{free_port(host_ip)}"
        master = [spark_class, "org.apache.spark.deploy.master.Master", "--host", host_ip]
        start_daemon(stack, [*master, "--port", master_url.rsplit(":", 1)[1], "--webui-port", "0"],
                     spark_env(host_ip), folder / "master.log")  # fmt: skip
        worker = [
            "ip", "netns", "exec", namespace, spark_class, "org.apache.spark.deploy.worker.Worker",
            "--host", worker_ip, "--cores", WORKER_CORES, "--memory", WORKER_MEMORY, "--webui-port", "0",
            "--work-dir", str(folder / "work"), master_url,
        ]  # fmt: skip
        process = start_daemon(stack, worker, spark_env(worker_ip), folder / "worker.log")
        wait_for_registration(process, folder / "worker.log")
        yield Cluster(master_url, host_ip, worker_ip, folder / "work", folder)


@contextmanager
def spark_submit(
    cluster: Cluster, *args: str, env: dict[str, str] | None = None, timeout: float = 150
) -> Iterator[Callable[[], tuple[int, str]]]:
    """Starts `spark-submit src/spark_job.py ARGS` on the cluster (the driver on the veth address).

    Yields a function that waits for it and returns its exit code and standard output, so that the
    test can work meanwhile; the submission is stopped if the test ends first.
    """
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.master_url,
        "--driver-memory", "1g", "--executor-memory", EXECUTOR_MEMORY, "--conf", "spark.cores.max=1",
        "--driver-java-options", LIGHT_JVM, "--conf", f"spark.executor.extraJavaOptions={LIGHT_JVM}",
        # Few tasks for one executor core; spark-submit's value also beats get_spark's default.
        "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
        str(SRC / "spark_job.py"), *args,
    ]  # fmt: skip
    stdout, stderr = (cluster.logs / f"submit-{args[0]}.{name}" for name in ("out", "err"))
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            command, env=spark_env(cluster.driver_host) | (env or {}), stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip

    def finish() -> tuple[int, str]:
        """Waits for spark-submit; returns its exit code and what it printed (the driver's log too)."""
        process.wait(timeout)
        return process.returncode, stdout.read_text(errors="replace")

    try:
        yield finish
    finally:
        stop_group(process)
