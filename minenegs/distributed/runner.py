"""Running a stage's work items on a Ray cluster: where (``RaySettings``), joining it (``connect``) and a pool of
actors (``run``). It knows nothing of the pipeline: each stage brings its own worker class, beside the stage
(``encode/on_ray.py``, ``retrieve/on_ray.py``), and writes the same folders as a local run.

Nothing here is imported unless ``--ray`` is given, and Ray itself only when a cluster is joined.

Ray retries a task whose actor died (Ray Data restarts actors without limit). ``MINENEGS_TEST_KILL_FILE``
names a file that, when it exists as a worker starts a task (``kill_point``), the worker removes and then
kills its own process: the tests use it to check those retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DEBUG_ENV, InputError, MinenegsError
from ..settings import setting

KILL_ENV = "MINENEGS_TEST_KILL_FILE"
# a line of Ray's own C++ logging: "[2026-12-06 11:08:53,915 E 15809 15809] core_worker.cc:2465: ..."
RAY_LOG_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] [\w.]+:\d+: ")
PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class RaySettings:
    """Where to run and how wide.

    ``address``: ``local`` (start Ray on this machine for the command), ``auto`` (the cluster this machine
    belongs to, as ``ray start`` or ``RAY_ADDRESS`` set it up), ``HOST:PORT`` of a head node, or
    ``ray://HOST:PORT`` (Ray Client). ``workers`` 0 means one per GPU when ``gpus`` is set, else one per
    ``cpus`` CPUs of the cluster.
    """

    address: str = setting(None, "Run on Ray (pip install 'minenegs[ray]'): local (start Ray on this machine), auto "
                           "(the cluster this machine is part of), HOST:PORT or ray://HOST:PORT.", flag="--ray")
    workers: int = setting(0, "Ray workers [default: one per --ray-gpus GPUs if set, else one per --ray-cpus CPUs of "
                           "the cluster].", flag="--ray-workers", min=0)
    cpus: float = setting(1.0, "CPUs per Ray worker.", flag="--ray-cpus")
    gpus: float = setting(0.0, "GPUs per Ray worker (model actors on GPUs).", flag="--ray-gpus")
    memory: float = setting(0.0, "Memory per Ray worker in GB, reserved from Ray (0: none reserved); a corpus "
                            "shard that needs more is refused before any work.", flag="--ray-memory")

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise InputError(f"--ray-workers {self.workers}: must be 0 (one per CPU or GPU) or more")
        if not self.cpus > 0 or self.cpus == float("inf"):
            raise InputError(f"--ray-cpus {self.cpus}: must be a positive number of CPUs per worker")
        if not self.gpus >= 0 or self.gpus == float("inf"):
            raise InputError(f"--ray-gpus {self.gpus}: must be 0 or a positive number of GPUs per worker")
        if not self.memory >= 0 or self.memory == float("inf"):
            raise InputError(f"--ray-memory {self.memory}: must be 0 or a positive number of GB per worker")
        _endpoint(self.address)  # a malformed address fails before any work

    @classmethod
    def of(cls, address: str | None, workers: int = 0, cpus: float = 1.0, gpus: float = 0.0,
           memory: float = 0.0) -> "RaySettings | None":
        """The settings, or None to run here; a Ray option without an address is an error, not ignored."""
        if address is None:
            if workers or cpus != 1.0 or gpus or memory:
                raise InputError("--ray-workers, --ray-cpus, --ray-gpus and --ray-memory need --ray ADDRESS")
            return None
        return cls(address, workers, cpus, gpus, memory)

    def actors(self, resources: dict[str, float]) -> int:
        """How many workers, given the cluster's total resources."""
        if self.workers:
            return self.workers
        if self.gpus:
            return max(1, int(resources.get("GPU", 0) // self.gpus))
        return max(1, int(resources.get("CPU", 1) // self.cpus))

    def remote_args(self) -> dict[str, float]:
        return {"num_cpus": self.cpus, **({"num_gpus": self.gpus} if self.gpus else {}),
                **({"memory": int(self.memory * 2 ** 30)} if self.memory else {})}


def _endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` to probe before joining, or None for ``local`` (and ``auto`` with no cluster known)."""
    if address == "local":
        return None
    if address == "auto":  # where Ray will look: RAY_ADDRESS, else the last cluster `ray start` made here
        known = os.environ.get("RAY_ADDRESS") or _read(_ray_temp() / "ray_current_cluster")
        return _endpoint(known) if known and known not in ("auto", "local") else None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray {address}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def _ray_temp() -> Path:
    """Ray's own temp folder, by Ray's rule."""
    return Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp") / "ray"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def probe(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at the address (Ray itself retries for long)."""
    endpoint = _endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__.replace("Error", " error").lower()
        where = "there" if address.endswith(f":{endpoint[1]}") else f"at {endpoint[0]}:{endpoint[1]}"
        raise InputError(f"--ray {address}: no Ray cluster answers {where} ({reason}); start one with "
                         "`ray start --head`, or pass --ray local to run on this machine") from None


@contextlib.contextmanager
def connect(settings: RaySettings) -> Iterator[Any]:
    """Ray, joined to the cluster for the duration (an existing ``ray.init`` of the caller is reused).

    ``local`` starts a head node of this run's own (loopback, free ports, its own temp folder; see
    ``ray_head``), never the instance Ray itself would start or find; a cluster on the loopback is joined with
    this process's Ray on the loopback too."""
    from .head import is_loopback, local_head, on_loopback

    probe(settings.address)
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'minenegs[ray]'") from None
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    endpoint = _endpoint(settings.address)
    with contextlib.ExitStack() as stack:
        if not os.environ.get(DEBUG_ENV):  # Ray's own notes, C++ log lines and Python warnings alike, stay out
            stack.enter_context(without_ray_log_lines())
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        if not ray.is_initialized():
            head = stack.enter_context(local_head()) if settings.address == "local" else None
            if head or (endpoint and is_loopback(endpoint[0])):
                stack.enter_context(on_loopback(head))
            _join(ray, settings.address, head.address if head else settings.address)
            stack.callback(ray.shutdown)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        context.raise_original_map_exception = True  # a worker's MinenegsError reaches the caller as itself
        yield ray


@contextlib.contextmanager
def without_ray_log_lines() -> Iterator[None]:
    """This process's standard error for the duration with the lines of Ray's own C++ logging left out (Ray
    writes them there itself, below Python: an error-level note on every Ray Data actor pool, for one). Everything
    else passes at once, partial lines too; a terminal stays a terminal (a pseudo-terminal of its size)."""
    import fcntl
    import termios

    sys.stderr.flush()
    saved = os.dup(2)
    tty = os.isatty(saved)
    if tty:
        reader, writer = os.openpty()
        with contextlib.suppress(OSError):
            fcntl.ioctl(writer, termios.TIOCSWINSZ, fcntl.ioctl(saved, termios.TIOCGWINSZ, b"\0" * 8))
        attrs = termios.tcgetattr(writer)
        attrs[1] &= ~termios.ONLCR  # pass "\n" as written
        termios.tcsetattr(writer, termios.TCSANOW, attrs)
    else:
        reader, writer = os.pipe()

    def forward() -> None:
        while True:
            try:
                chunk = os.read(reader, 65536)
            except OSError:  # a pseudo-terminal whose other end closed
                break
            if not chunk:
                break
            kept = b"".join(line for line in chunk.splitlines(keepends=True) if not RAY_LOG_LINE.match(line))
            if kept:
                os.write(saved, kept)

    thread = threading.Thread(target=forward, name="minenegs-stderr", daemon=True)
    thread.start()
    os.dup2(writer, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(writer)
        thread.join(5.0)
        os.close(reader)
        os.close(saved)


def _join(ray: Any, given: str, address: str) -> None:
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "" if os.environ.get("RAY_AUTH_MODE") or given == "local" else (
            "; a cluster with token authentication (Ray's default) needs RAY_AUTH_MODE=token here too")
        raise InputError(f"--ray {given}: cannot join the cluster: {message}{hint}") from None


def kill_point() -> None:
    """See the module's note on ``MINENEGS_TEST_KILL_FILE``: claim the file, then die as a killed worker does."""
    path = os.environ.get(KILL_ENV)
    if not path:
        return
    try:
        os.rename(path, f"{path}.{os.getpid()}")
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def run(settings: RaySettings, items: list[dict[str, Any]], worker: type, kwargs: dict[str, Any],
        done: Callable[[dict[str, Any]], None]) -> None:
    """Each item through one of a pool of ``worker`` actors (``worker(**kwargs)(batch)``), calling ``done``
    with each result row as it arrives."""
    with connect(settings) as ray:
        size = min(len(items), settings.actors(ray.cluster_resources()))
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        results = dataset.map_batches(worker, fn_constructor_kwargs=kwargs, batch_size=1,
                                      compute=ray.data.ActorPoolStrategy(size=size), **settings.remote_args())
        try:
            for row in results.iter_rows():
                done(row)
        except Exception as exc:  # Ray raises a worker's exception inside its own wrapper
            original = _original(exc)
            first = str(original).strip().splitlines()[0] if str(original).strip() else ""
            if isinstance(original, MinenegsError):  # its message, without what Ray appended to it
                raise type(original)(first) from None
            raise MinenegsError(f"the Ray job failed: {type(original).__name__}: {first}") from exc


def _original(exc: BaseException) -> BaseException:
    """The exception a worker raised, out of Ray's wrappers (``cause``) and chains (``__cause__``)."""
    while True:
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            return exc
        exc = inner
