"""The model sandbox's process: `python -m flight_delay.serving.sandbox_server SOCKET`.

Started beside the workers by `flight-delay serve` (serving/sandbox.py's SandboxProcess), or by the
first process that checks a model without one (tests, `flight-delay load`). It imports everything a
check needs and runs one check of each kind unconfined (so that nothing is left to import later),
then listens on SOCKET, in a private folder. It never reads an upload: for each request it forks a
child that confines itself before it reads a byte of it (`confine`):

- file descriptors: 0 the upload (a sealed memfd), 1 and 2 a log (a memfd, RLIMIT_FSIZE bounds
  it), 3 the answer pipe; every other one closed and RLIMIT_NOFILE 4, so no file or socket can be
  opened (and, started as root, a network namespace of its own and the `nobody` user, so that the
  limits cannot be raised again);
- RLIMIT_AS: its address space at the fork plus the request's memory budget;
- RLIMIT_CPU: the request's CPU seconds (SIGXCPU, then SIGKILL a second later); RLIMIT_CORE 0.

The child runs loader.check_upload and writes its answer on the pipe; this process waits for it at
most the request's wall-clock timeout (then SIGKILL) and answers the requester with how it ended.
One request at a time (each at most its timeout); it stops when its stdin closes (its server is gone).
"""

from __future__ import annotations

import argparse
import codecs
import ctypes
import fcntl
import importlib
import json
import logging
import os
import pickle
import resource
import select
import signal
import socket
import time
import traceback
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from flight_delay.errors import FlightDelayError
from flight_delay.serving.loader import check_upload
from flight_delay.serving.safe_pickle import ALLOWED_GLOBALS

log = logging.getLogger(__name__)

UPLOAD_FD, ANSWER_FD, OPEN_FDS = 0, 3, 4
LOG_LIMIT_BYTES = 1 << 20
LOG_TAIL_BYTES = 2048
NOBODY = 65534
CLONE_NEWNET = 0x40000000
EXIT_CONFINE_FAILED = 70
EXIT_FAILED = 71
PICKLE_PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


@dataclass(frozen=True)
class Limits:
    """What one check may use: address space above the fork, CPU seconds, wall-clock seconds."""

    memory_mb: int
    cpu_s: int
    timeout_s: float

    @classmethod
    def from_request(cls, message: bytes) -> Limits:
        """Reads a request's limits (a JSON line); raises ValueError on anything else."""
        fields = json.loads(message)
        limits = cls(int(fields["memory_mb"]), int(fields["cpu_s"]), float(fields["timeout_s"]))
        if min(limits.memory_mb, limits.cpu_s, limits.timeout_s) <= 0:
            raise ValueError("limits must be positive")
        return limits


def confine(limits: Limits, upload_fd: int, answer_fd: int, log_fd: int) -> None:
    """Leaves the process the upload, a log and the answer pipe as fds 0-3, and its resource limits."""
    _arrange_fds([upload_fd, log_fd, log_fd, answer_fd])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full log fails the write, not the check
    address_space = _address_space_bytes()  # reads /proc: before the descriptors run out
    _lower(resource.RLIMIT_CORE, 0, 0)
    _lower(resource.RLIMIT_FSIZE, LOG_LIMIT_BYTES, LOG_LIMIT_BYTES)
    budget = address_space + (limits.memory_mb << 20)
    _lower(resource.RLIMIT_AS, budget, budget)
    _lower(resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1)  # SIGXCPU, then SIGKILL
    _lower(resource.RLIMIT_NOFILE, OPEN_FDS, OPEN_FDS)
    if os.geteuid() == 0:
        _leave_root()


def _lower(limit: int, soft: int, hard: int) -> None:
    """Sets a resource limit, never above the hard limit the process already has."""
    current = resource.getrlimit(limit)[1]
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(limit, (soft, hard))


def _arrange_fds(sources: Sequence[int]) -> None:
    """Makes sources[i] file descriptor i and closes every other descriptor."""
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in sources]  # above the targets, distinct
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
    os.closerange(len(sources), resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def _address_space_bytes() -> int:
    """This process's address space now (the first field of /proc/self/statm, in pages)."""
    return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _leave_root() -> None:
    """As root: a network namespace of its own (no interface up) and the nobody user, for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare(CLONE_NEWNET)  # where the kernel refuses it, RLIMIT_NOFILE still stops any socket
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def run_child(limits: Limits, upload_fd: int, answer_fd: int, log_fd: int) -> NoReturn:
    """The forked child: confines itself, reads the upload, checks it, answers; never returns."""
    code = EXIT_CONFINE_FAILED  # until confined, nothing of the upload is read
    try:
        confine(limits, upload_fd, answer_fd, log_fd)
        code = EXIT_FAILED
        _write_all(ANSWER_FD, _answer())
        code = 0
    except BaseException:
        with suppress(BaseException):
            traceback.print_exc()  # into the log
    finally:
        os._exit(code)  # never back into the server's loop, whatever happened


def _answer() -> bytes:
    """Reads the upload and checks it; an upload too large for the memory limit is that limit."""
    try:
        data = _read_upload()
    except MemoryError:
        return _line({"limit": "memory"})
    return checked_answer(data)


def _read_upload() -> bytes:
    """Reads the whole upload from fd 0 (a memfd of known size)."""
    size, chunks, offset = os.fstat(UPLOAD_FD).st_size, [], 0
    while offset < size:
        chunk = os.pread(UPLOAD_FD, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def checked_answer(data: bytes) -> bytes:
    """The answer line (and native bytes) for an upload: accepted, refused, or a memory limit hit."""
    try:
        kind, native = check_upload(data)
    except MemoryError:
        return _line({"limit": "memory"})
    except FlightDelayError as exc:
        if "bad_alloc" in exc.message:  # LightGBM's C++ could not allocate: the same limit
            return _line({"limit": "memory"})
        refusal = {"status": exc.status, "code": exc.code, "message": exc.message, "errors": exc.errors}
        return _line({"refused": refusal})
    except Exception as exc:  # a check that failed in a way of its own: the model is not accepted
        message = f"The model check failed: {type(exc).__name__}: {str(exc)[:300]}"
        return _line({"refused": {"status": 422, "code": "unusable_model", "message": message}})
    return _line({"kind": kind, "native_bytes": len(native)}) + native


def _line(header: dict[str, Any]) -> bytes:
    """One JSON line."""
    return json.dumps(header, default=str).encode() + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """Writes all of data to fd (a pipe takes it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def handle(conn: socket.socket, listener: socket.socket) -> None:
    """Serves one request: receives the upload and answer fds, forks the child, reports its end."""
    conn.settimeout(10)
    message, fds, _, _ = socket.recv_fds(conn, 4096, 2)
    try:
        if len(fds) != 2:
            raise ValueError("a request carries the upload's and the answer's descriptors")
        limits = Limits.from_request(message)
    except (ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        return
    ending = _fork_and_wait(limits, fds, [conn, listener])
    conn.sendall(_line(ending))


def _fork_and_wait(limits: Limits, fds: list[int], sockets: list[socket.socket]) -> dict[str, Any]:
    """Forks the confined child on the upload, waits for it within the timeout, says how it ended."""
    log_fd = os.memfd_create("model-check-log")
    try:
        pid = os.fork()
    except OSError:
        for fd in (*fds, log_fd):
            os.close(fd)  # the requester's answer pipe then ends: it reports the sandbox unavailable
        raise
    if pid == 0:
        for sock in sockets:
            sock.detach()  # their numbers are about to be reused: never close them from here
        run_child(limits, fds[0], fds[1], log_fd)
    for fd in fds:
        os.close(fd)  # the answer pipe ends when the child does
    try:
        return _wait(pid, limits.timeout_s) | {"log": _tail(log_fd)}
    finally:
        os.close(log_fd)


def _wait(pid: int, timeout_s: float) -> dict[str, Any]:
    """Waits for the child at most timeout_s (then kills it); its exit code (-signal) and usage."""
    ended = _ended_within(pid, timeout_s)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "timed_out": not ended,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
    }


def _ended_within(pid: int, timeout_s: float) -> bool:
    """Whether the child ends within timeout_s (left unreaped): on its pidfd, else polling waitid."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # a kernel or seccomp profile without pidfd_open
        deadline = time.monotonic() + timeout_s
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True
    try:
        ending = select.poll()
        ending.register(pidfd, select.POLLIN)
        return bool(ending.poll(timeout_s * 1000))
    finally:
        os.close(pidfd)


def _tail(log_fd: int) -> str:
    """The end of what the child logged (LightGBM's messages, a C++ terminate's reason)."""
    size = os.fstat(log_fd).st_size
    return os.pread(log_fd, LOG_TAIL_BYTES, max(0, size - LOG_TAIL_BYTES)).decode(errors="replace")


def serve(listener: socket.socket) -> None:
    """Answers requests one at a time until stdin closes."""
    events = select.poll()
    for fd in (listener.fileno(), 0):
        events.register(fd, select.POLLIN)
    while True:
        readable = {fd for fd, _ in events.poll()}
        if 0 in readable and not os.read(0, 4096):
            return  # the server and every worker are gone
        if listener.fileno() in readable:
            conn, _ = listener.accept()
            with conn, suppress(OSError):  # a requester that left: nothing to answer
                handle(conn, listener)


def warm_up() -> None:
    """Loads here, unconfined, all a check may need: a confined child can open no file to import one.

    Every allowlisted class's module, the codecs pickle's text opcodes decode with, and one check of
    each kind of model (in every pickle protocol) for what the libraries import as they run.
    """
    for qualified in sorted(ALLOWED_GLOBALS):
        module, _, name = qualified.rpartition(".")
        getattr(importlib.import_module(module), name)
    for codec in ("raw-unicode-escape", "unicode-escape", "latin-1", "ascii", "utf-8"):
        codecs.lookup(codec)
    for upload in _warm_up_uploads():
        check_upload(upload)


def _warm_up_uploads() -> list[bytes]:
    """A tiny text booster, and a pickled LGBMRegressor and Pipeline (encoder, imputer) in every protocol."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "carrier": rng.choice(["UA", "AA", "DL"], 64),
            "dep_delay": rng.normal(10, 20, 64),
            "distance": rng.uniform(100, 2500, 64),
        }
    )
    label = frame["dep_delay"] * 0.9 + rng.normal(0, 1, 64)
    params = {"n_estimators": 2, "num_leaves": 3, "min_child_samples": 2, "n_jobs": 1, "verbose": -1}
    regressor = lgb.LGBMRegressor(**params).fit(frame[["dep_delay", "distance"]], label)
    columns = ColumnTransformer(
        [
            ("carrier", OneHotEncoder(handle_unknown="ignore"), ["carrier"]),
            ("numbers", SimpleImputer(), [1, 2]),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("model", lgb.LGBMRegressor(**params))]).fit(frame, label)
    pickles = [pickle.dumps(obj, protocol=p) for obj in (regressor, pipeline) for p in PICKLE_PROTOCOLS]
    return [regressor.booster_.model_to_string().encode(), *pickles]


def listen(socket_path: str) -> socket.socket:
    """Listens on socket_path, which appears only once it accepts (bound under another name first)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{socket_path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(16)
    os.rename(staging, socket_path)
    return listener


def main(argv: Sequence[str] | None = None) -> None:
    """Warms up, then serves checks on the socket until stdin closes."""
    parser = argparse.ArgumentParser(description="The model sandbox (started by flight-delay serve).")
    parser.add_argument("socket_path")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warm_up()
    with listen(args.socket_path) as listener:
        log.info("model sandbox listening (pid %d)", os.getpid())
        serve(listener)


if __name__ == "__main__":
    main()
