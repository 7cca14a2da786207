"""A Ray head node on this machine that shares nothing with any other Ray instance.

``--ray local`` and the test suite start their clusters here: the head and every node address are the
loopback (127.0.0.1), every port Ray opens is one found free just before the start (GCS, Ray client server,
dashboard agent gRPC and HTTP, metrics export, runtime-env agent, object and node managers, and a range
of worker ports; the Ray client server's too where Ray Client is installed), and Ray's temp folder (sessions, sockets, logs, the "current cluster" address file) is a
folder of the head's own. So a second Ray instance on the machine, an earlier run's leftovers or a stale
session file can neither take its ports nor make a driver join the wrong cluster.

Ray resolves 127.0.0.1 to the machine's network address unless it runs in its single-machine mode
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``): the head runs in that mode, and a driver joining a cluster on
the loopback runs in it for the duration (``on_loopback``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MinenegsError

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every node address is the loopback
AUTH_ENV = "RAY_AUTH_MODE"  # "token", as for a cluster `ray.init` starts, unless the user says otherwise
TOKEN_ENV = "RAY_AUTH_TOKEN"  # a head of ours gets a token of its own, passed to its drivers, no file written
HEAD_ENV = "MINENEGS_RAY_HEAD"  # set to a head's folder in its environment, so in every process it starts
STARTED = "Ray runtime started"  # what `ray start` prints once its processes are up
PORT_FLAGS = ("--port", "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--metrics-export-port",
              "--runtime-env-agent-port", "--object-manager-port", "--node-manager-port")
CLIENT_PORT_FLAG = "--ray-client-server-port"  # Ray opens it only where Ray Client (grpcio) is installed
WORKER_PORTS = 200  # one per worker process alive at once
WORKER_RANGE = (20000, 32000)  # below Linux's ephemeral ports, so no outgoing connection takes one
START_SECONDS = 120.0
STOP_SECONDS = 15.0  # how long stopping a head waits at most for its processes to be gone
SOCKET_PATH_LIMIT = 107  # bytes in an AF_UNIX socket path, which Ray checks before it starts
# Ray puts its sockets at TEMP/session_<date>_<time>_<micros>_<pid>/sockets/plasma_store: 64 bytes after the
# folder with a 7-digit process id (Linux's largest), so the folder itself may have 43 at most
MAX_TEMP_DIR = SOCKET_PATH_LIMIT - len("/session_2026-12-08_01-26-30_902073_4194304/sockets/plasma_store")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def head_env(base: dict[str, str] | None = None, token: str | None = None) -> dict[str, str]:
    """The environment a head of ours and its drivers run in: single-machine mode, token authentication
    (with ``token``, unless the user set a mode or a token)."""
    base = dict(os.environ if base is None else base)
    auth = {AUTH_ENV: base.get(AUTH_ENV, "token")}
    if token and auth[AUTH_ENV] == "token" and TOKEN_ENV not in base:
        auth[TOKEN_ENV] = token
    return {**base, SINGLE_MACHINE_ENV: "0", **auth}


@contextlib.contextmanager
def on_loopback(head: Head | None = None) -> Iterator[None]:
    """This process's Ray in single-machine mode (node address 127.0.0.1) for the duration; with ``head``,
    in the environment of that head (its token)."""
    updates = {name: value for name, value in head.env().items() if os.environ.get(name) != value} if head \
        else {SINGLE_MACHINE_ENV: "0"}
    before = {name: os.environ.get(name) for name in updates}
    os.environ.update(updates)  # read by Ray when imported, and by the processes it starts
    constants = sys.modules.get("ray._private.ray_constants")
    flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None:  # Ray was imported before: its flag is already read
        constants.ENABLE_RAY_CLUSTER = False
    _reload_ray_config()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = flag
        _reload_ray_config()


def _reload_ray_config() -> None:
    """Make an imported Ray read its settings and token from the environment again, as Ray does itself
    when it turns token authentication on."""
    raylet = sys.modules.get("ray._raylet")
    if raylet is None:
        return
    if hasattr(raylet, "Config"):
        raylet.Config.initialize("")
    if hasattr(raylet, "AuthenticationTokenLoader"):
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on the loopback now (all held open together, so none repeats)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))  # the wildcard: taken on any address means taken
            return True
        except OSError:
            return False


def free_range(size: int = WORKER_PORTS, span: tuple[int, int] = WORKER_RANGE, tries: int = 50) -> tuple[int, int]:
    """``(first, last)`` of ``size`` consecutive ports all free now, at a random place in ``span``."""
    draw = random.SystemRandom()
    for _ in range(tries):
        first = draw.randrange(span[0], span[1] - size)
        if all(_bindable(p) for p in range(first, first + size)):
            return first, first + size - 1
    raise MinenegsError(f"no {size} consecutive free ports between {span[0]} and {span[1]} for Ray's workers")


@dataclass
class Head:
    """A running head node: ``address`` to join, ``temp_dir`` it owns, ``log`` its `ray start` output."""

    address: str
    temp_dir: Path
    log: Path
    process: subprocess.Popen
    token: str

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment in which a driver joins this head."""
        return head_env(base, self.token)

    def output(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 3.0, wait: float = STOP_SECONDS) -> None:
        """Stop the head and everything it started, and return once none of it runs (``wait`` seconds at most);
        a head that already exited is fine."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        group, deadline = self.process.pid, time.monotonic() + wait
        while True:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)  # whatever is left of its process group
            self.process.poll()  # reap our own child, so it is not counted as left
            left = _processes_of(group, self.temp_dir)  # the group, and any process that left it (workers, agents)
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.process.wait()


def _processes_of(group: int, folder: Path) -> list[int]:
    """Live processes (zombies aside) in process group ``group``, or whose command line names ``folder`` (Ray's
    own processes get their session folder), or that inherited the head's mark (:data:`HEAD_ENV`; workers, whose
    command line Ray rewrites as ``ray::NAME``)."""
    needle, mark = str(folder).encode(), f"{HEAD_ENV}={folder}\0".encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(entry.name)
            stat = (entry / "stat").read_text()
            state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
            if pid == os.getpid() or state in ("Z", "X"):
                continue
            if int(pgrp) == group or needle in (entry / "cmdline").read_bytes() or \
                    mark in (entry / "environ").read_bytes():
                pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


def start_head(temp_dir: Path, *, cpus: float | None = None, env: dict[str, str] | None = None,
               timeout: float = START_SECONDS) -> Head:
    """Start a head node in ``temp_dir`` (created; it holds Ray's sessions, sockets and logs) and return once
    `ray start` says it is up. Raises ``MinenegsError`` with the head's own output when it does not come up."""
    temp_dir = Path(temp_dir).resolve()
    if (size := len(os.fsencode(temp_dir))) > MAX_TEMP_DIR:
        raise MinenegsError(f"Ray's temp folder {temp_dir} is {size} bytes long: Ray's socket "
                            f"paths under it would pass {SOCKET_PATH_LIMIT} bytes; use one of at most {MAX_TEMP_DIR}")
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = temp_dir / "head.log"
    flags = PORT_FLAGS + ((CLIENT_PORT_FLAG,) if importlib.util.find_spec("grpc") else ())
    ports = free_ports(len(flags))
    first, last = free_range()
    args = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--node-ip-address={LOOPBACK}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
            "--disable-usage-stats", "--num-gpus=0", f"--min-worker-port={first}", f"--max-worker-port={last}",
            *(f"{flag}={port}" for flag, port in zip(flags, ports)),
            *([f"--num-cpus={cpus:g}"] if cpus is not None else [])]
    token = secrets.token_hex(32)
    with log.open("wb") as out:
        process = subprocess.Popen(args, env={**head_env(env, token), HEAD_ENV: str(temp_dir)},
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    head = Head(f"{LOOPBACK}:{ports[0]}", temp_dir, log, process, token)
    deadline = time.monotonic() + timeout
    while STARTED not in head.output(lines=200):
        if process.poll() is not None or time.monotonic() > deadline:
            why = f"exited with status {process.returncode}" if process.poll() is not None else \
                f"was not up after {timeout:g} s"
            output = head.output()
            head.stop()
            raise MinenegsError(f"the Ray head node {why}; its output:\n{output}")
        time.sleep(0.2)
    return head


@contextlib.contextmanager
def short_temp_dir(prefix: str = "minenegs-ray-") -> Iterator[Path]:
    """A fresh folder short enough for a head's temp folder (see :data:`MAX_TEMP_DIR`), removed afterwards: in
    $TMPDIR, or in /tmp where $TMPDIR is too deep."""
    import tempfile

    base = os.path.realpath(tempfile.gettempdir())  # as start_head will see it
    if len(os.fsencode(base)) + 1 + len(prefix) + 8 > MAX_TEMP_DIR:  # mkdtemp adds "/", the prefix and 8 characters
        base = "/tmp"
    temp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield temp_dir
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def local_head(cpus: float | None = None) -> Iterator[Head]:
    """A head of this process's own for the duration, in a fresh temp folder removed afterwards."""
    with short_temp_dir() as temp_dir:
        head = start_head(temp_dir, cpus=cpus)
        try:
            yield head
        finally:
            head.stop()
