"""The model sandbox, from the workers' side: every upload is read and checked in a confined child.

`ModelSandbox.check(upload)` hands the upload (as a sealed memfd) and the write end of an answer pipe
to the sandbox process (serving/sandbox_server.py) over its Unix socket; that process forks a child
that confines itself (fds, address space, CPU time, no network), reads the upload, writes its native
form and checks it (loader.check_upload), and answers on the pipe. The worker reads the answer (at
most a bound, within a deadline) and how the child ended, and returns the native form, re-raises
the refusal the child made, or raises ModelCheckFailed (422) naming the crash, the timeout or the
limit hit. So a worker never parses an upload: it cannot crash, read a file or grow on one.

`flight-delay serve` starts one sandbox process for the server (SandboxProcess; its arbiter restarts
it if it dies) and gives the workers its socket (MODEL_SANDBOX_SOCKET); a process without one (the
test client, `flight-delay load`, `card`) starts its own on the first check and keeps it until exit.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight_delay.children import end_child
from flight_delay.errors import InvalidArtifact, ModelCheckFailed, ModelCheckUnavailable, UnusableModel
from flight_delay.serving.loader import refuse_foreign

log = logging.getLogger(__name__)

START_WAIT_S = 60.0  # how long a check waits for a sandbox process that is starting
RESTART_EVERY_S = 5.0
# The sandbox process stays on one thread, so that forking it is safe: the thread pools a check's
# libraries would start hold one thread (OpenMP, OpenBLAS), and pyarrow's jemalloc (which pandas
# loads) starts no background thread.
ONE_THREAD = {
    **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"),
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
# The refusals a child may make, by code: anything else it says is a failed check.
REFUSALS = {error.code: error for error in (InvalidArtifact, UnusableModel)}


@dataclass(frozen=True)
class SandboxLimits:
    """What one check may use (MODEL_SANDBOX_MEMORY_MB, MODEL_SANDBOX_CPU_S, MODEL_SANDBOX_TIMEOUT_S)."""

    memory_mb: int = 1024
    cpu_s: int = 20
    timeout_s: float = 30.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SandboxLimits:
        """The limits an app's configuration sets."""
        return cls(
            config["MODEL_SANDBOX_MEMORY_MB"],
            config["MODEL_SANDBOX_CPU_S"],
            config["MODEL_SANDBOX_TIMEOUT_S"],
        )

    def request(self) -> bytes:
        """The request line the sandbox process reads."""
        limits = {"memory_mb": self.memory_mb, "cpu_s": self.cpu_s, "timeout_s": self.timeout_s}
        return json.dumps(limits).encode() + b"\n"


@dataclass(frozen=True)
class Sandboxed:
    """What the sandbox accepted: the kind the upload was, and its native form."""

    kind: str
    native: bytes


class ModelSandbox:
    """Checks uploads in the sandbox process at socket_path (or this process's own, started on demand)."""

    def __init__(self, limits: SandboxLimits | None = None, socket_path: str | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.socket_path = socket_path

    def check(self, data: bytes) -> Sandboxed:
        """Checks an upload in a confined child; returns its native form, or raises why not."""
        refuse_foreign(data)  # from the first bytes alone: no child for an empty file or a zip
        upload = _sealed_memfd(data)
        answer_r, answer_w = os.pipe()
        deadline = time.monotonic() + 2 * self.limits.timeout_s + 10  # one check may be ahead of ours
        try:
            with self._connected(deadline) as conn:
                socket.send_fds(conn, [self.limits.request()], [upload, answer_w])
                os.close(answer_w)
                answer_w = -1
                answer = _read_bounded(answer_r, 2 * len(data) + (16 << 20), deadline)
                os.close(answer_r)  # a child still writing (an answer too large) now fails and ends
                answer_r = -1
                ending = _read_line(conn, deadline)
        except OSError as exc:
            raise ModelCheckUnavailable(f"The model sandbox did not answer ({exc}); try again.") from exc
        finally:
            for fd in (upload, answer_r, answer_w):
                if fd >= 0:
                    os.close(fd)
        return outcome(ending, answer, self.limits)

    def _connected(self, deadline: float) -> socket.socket:
        """A connection to the sandbox process, waiting while it starts (at most START_WAIT_S)."""
        give_up = min(deadline, time.monotonic() + START_WAIT_S)
        while True:
            path = self.socket_path or local_process().socket_path  # (restarted if it stopped)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(path)
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
                if time.monotonic() > give_up:
                    raise ModelCheckUnavailable(
                        "The model sandbox is not running; try again shortly."
                    ) from None
                time.sleep(0.05)


def _sealed_memfd(data: bytes) -> int:
    """An anonymous in-memory file holding data, sealed against any change, at offset 0."""
    fd = os.memfd_create("model-upload", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_bounded(fd: int, limit: int, deadline: float) -> bytes | None:
    """Reads fd to its end within the deadline; None once more than `limit` bytes came (then stops)."""
    chunks, total = [], 0
    waiting = select.poll()  # not select(): a worker may hold more than FD_SETSIZE descriptors
    waiting.register(fd, select.POLLIN)
    while True:
        if not waiting.poll(max(0, deadline - time.monotonic()) * 1000):
            raise TimeoutError("the model check's answer did not end in time")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            return None  # closing our end makes the child's next write fail
        chunks.append(chunk)


def _read_line(conn: socket.socket, deadline: float) -> dict[str, Any]:
    """Reads the sandbox process's one-line report of how the child ended."""
    conn.settimeout(max(0.1, deadline - time.monotonic()))
    received = b""
    while not received.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the model sandbox closed the connection without a report")
        received += chunk
    return json.loads(received)


def outcome(ending: Mapping[str, Any], answer: bytes | None, limits: SandboxLimits) -> Sandboxed:
    """Turns how the child ended and what it answered into the native form, or the error to raise."""
    if answer is None:
        failure = ("answer_too_large", None, "answered more than the upload's native form can hold")
    else:
        failure = _failure(ending, limits)
    header, native = _answer_parts(answer or b"")
    if failure is None and header.get("limit") == "memory":
        failure = ("memory_limit", None, f"hit its memory limit (MODEL_SANDBOX_MEMORY_MB={limits.memory_mb})")
    if failure is not None:
        _log_failure(failure, ending)
        what, signal_name, said = failure
        raise ModelCheckFailed(
            f"The model check {said}; nothing was loaded.",
            {"sandbox": {"outcome": what, "signal": signal_name}},
        )
    if "refused" in header:
        raise _refusal(header["refused"])
    if isinstance(header.get("kind"), str) and header.get("native_bytes") == len(native):
        return Sandboxed(header["kind"], native)
    raise ModelCheckFailed("The model check ended without an answer; nothing was loaded.")


def _failure(ending: Mapping[str, Any], limits: SandboxLimits) -> tuple[str, str | None, str] | None:
    """(outcome, signal, wording) when the child timed out, hit its CPU limit or crashed; else None."""
    code = ending.get("exit_code")
    if ending.get("timed_out"):
        return "timeout", "SIGKILL", f"ran out of time (MODEL_SANDBOX_TIMEOUT_S={limits.timeout_s:g} s)"
    if not isinstance(code, int) or code == 0:
        return None
    name = signal.Signals(-code).name if code < 0 and -code in signal.valid_signals() else None
    over_cpu = float(ending.get("cpu_s") or 0) >= limits.cpu_s
    if name == "SIGXCPU" or (name == "SIGKILL" and over_cpu):
        return "cpu_limit", name, f"hit its CPU time limit (MODEL_SANDBOX_CPU_S={limits.cpu_s})"
    if "bad_alloc" in str(ending.get("log", "")):  # C++ could not allocate, then aborted
        return "memory_limit", name, f"hit its memory limit (MODEL_SANDBOX_MEMORY_MB={limits.memory_mb})"
    if name is not None:
        return "crash", name, f"crashed ({name}) reading the upload"
    return "crash", None, f"failed (exit status {code}) reading the upload"


def _answer_parts(answer: bytes) -> tuple[dict[str, Any], bytes]:
    """The child's answer: its JSON header line and the native bytes after it."""
    line, _, native = answer.partition(b"\n")
    try:
        header = json.loads(line) if line else {}
    except ValueError:
        header = {}
    return (header if isinstance(header, dict) else {}), native


def _refusal(refused: Any) -> Exception:
    """The refusal the child made, as the domain error a worker raises (invalid_artifact, unusable_model)."""
    if not isinstance(refused, dict):
        return ModelCheckFailed("The model check answered something unreadable; nothing was loaded.")
    error = REFUSALS.get(refused.get("code"), UnusableModel)
    errors = refused.get("errors")
    return error(
        str(refused.get("message", "The model was refused.")), errors if isinstance(errors, dict) else None
    )


def _log_failure(failure: tuple[str, str | None, str], ending: Mapping[str, Any]) -> None:
    """Logs a failed check with what the child printed last (LightGBM's message, a C++ abort)."""
    tail = str(ending.get("log", ""))[-500:].strip()
    log.warning(
        "model check %s (%s): %s", failure[0], failure[1] or ending.get("exit_code"), tail or "no output"
    )


class SandboxProcess:
    """The sandbox process: started by serve before the workers, restarted (by the arbiter) if it dies.

    The workers inherit the write end of its stdin, so it reads EOF, and stops, only once the server
    and every worker are gone.
    """

    def __init__(self, log_level: str = "INFO") -> None:
        # A private folder (0700): only this user may reach the socket.
        self.folder = Path(tempfile.mkdtemp(prefix="flight-delay-sandbox-"))
        self.socket_path = str(self.folder / "sandbox.sock")
        self.command = [sys.executable, "-m", "flight_delay.serving.sandbox_server", self.socket_path]
        self.command.append(f"--log-level={log_level}")
        self.owner = os.getpid()  # forked workers inherit this object; only its starter stops it
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Starts the process (it listens once it has warmed up; checks wait for it meanwhile)."""
        Path(self.socket_path).unlink(missing_ok=True)  # left by one that was killed
        environment = {**os.environ, **ONE_THREAD}
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, env=environment)  # noqa: S603
        self.started_at = time.monotonic()

    def ensure_running(self) -> None:
        """Starts it again if it stopped (at most every RESTART_EVERY_S)."""
        if self.process is None or self.process.poll() is None:
            return
        if time.monotonic() - self.started_at >= RESTART_EVERY_S:
            log.error("the model sandbox stopped (%s); starting it again", self.process.returncode)
            self.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops it (from the process that started it only) and removes its folder."""
        if os.getpid() != self.owner:
            return
        if self.process is not None:
            end_child(self.process, timeout_s)
        shutil.rmtree(self.folder, ignore_errors=True)


_LOCAL: SandboxProcess | None = None
_LOCAL_LOCK = threading.Lock()


def local_process() -> SandboxProcess:
    """This process's own sandbox process (no server gave one), started on first use, stopped at exit."""
    global _LOCAL
    with _LOCAL_LOCK:
        if _LOCAL is None or _LOCAL.owner != os.getpid():
            _LOCAL = SandboxProcess()
            _LOCAL.start()
            atexit.register(_LOCAL.stop)
        else:
            _LOCAL.ensure_running()
        return _LOCAL
