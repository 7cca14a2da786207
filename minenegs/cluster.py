"""The encode and retrieve stages run on a Ray cluster, writing the same folders as a local run.

Nothing here is imported unless ``--ray`` is given, and Ray itself only when a cluster is joined.

- Encoding: the driver reads the inputs and plans the content-addressed chunks as a local run does; the chunks
  not yet cached go through Ray Data to a pool of model actors, which write them to the chunk cache (a folder
  every node must share). The driver then assembles the embeddings folder from the cache, exactly as a local
  run whose chunks were all cached: same manifest, same bytes. A job killed half-way keeps every chunk
  written; the next run, on the cluster or not, encodes only the rest.
- Retrieval: the driver builds (or reuses) the index under the embeddings folder, then query batches go to a
  pool of retrieval actors, each holding the index once. Each batch is written as a part file (whole or not at
  all) and the driver joins the parts in query order into the pool folder, so a retried batch can neither
  duplicate nor drop a row.

Ray retries a task whose actor died (Ray Data restarts actors without limit). ``MINENEGS_TEST_KILL_FILE``
names a file that, when it exists as a worker starts a task, the worker removes and then kills its own
process: the tests use it to check those retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, MinenegsError

KILL_ENV = "MINENEGS_TEST_KILL_FILE"
PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class RaySettings:
    """Where to run and how wide.

    ``address``: ``local`` (start Ray on this machine for the command), ``auto`` (the cluster this machine
    belongs to, as ``ray start`` or ``RAY_ADDRESS`` set it up), ``HOST:PORT`` of a head node, or
    ``ray://HOST:PORT`` (Ray Client). ``workers`` 0 means one per GPU when ``gpus`` is set, else one per
    ``cpus`` CPUs of the cluster.
    """

    address: str
    workers: int = 0
    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise InputError(f"--ray-workers {self.workers}: must be 0 (one per CPU or GPU) or more")
        if not self.cpus > 0 or self.cpus == float("inf"):
            raise InputError(f"--ray-cpus {self.cpus}: must be a positive number of CPUs per worker")
        if not self.gpus >= 0 or self.gpus == float("inf"):
            raise InputError(f"--ray-gpus {self.gpus}: must be 0 or a positive number of GPUs per worker")
        _endpoint(self.address)  # a malformed address fails before any work

    def actors(self, resources: dict[str, float]) -> int:
        """How many workers, given the cluster's total resources."""
        if self.workers:
            return self.workers
        if self.gpus:
            return max(1, int(resources.get("GPU", 0) // self.gpus))
        return max(1, int(resources.get("CPU", 1) // self.cpus))

    def remote_args(self) -> dict[str, float]:
        return {"num_cpus": self.cpus, **({"num_gpus": self.gpus} if self.gpus else {})}


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
    from .ray_head import is_loopback, local_head, on_loopback

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
        if ray.is_initialized():
            joined = False
        else:
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


def _join(ray: Any, given: str, address: str) -> None:
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "" if os.environ.get("RAY_AUTH_MODE") or given == "local" else (
            "; a cluster with token authentication (Ray's default) needs RAY_AUTH_MODE=token here too")
        raise InputError(f"--ray {given}: cannot join the cluster: {message}{hint}") from None


def _kill_point() -> None:
    """See the module's note on ``MINENEGS_TEST_KILL_FILE``: claim the file, then die as a killed worker does."""
    path = os.environ.get(KILL_ENV)
    if not path:
        return
    try:
        os.rename(path, f"{path}.{os.getpid()}")
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _run(settings: RaySettings, items: list[dict[str, Any]], worker: type, kwargs: dict[str, Any],
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


# -- encoding ------------------------------------------------------------------------------------------------
class _EncodeWorker:
    """A model actor: encodes a chunk's texts and writes them to the shared chunk cache."""

    def __init__(self, encoder: Any, cache_root: str) -> None:
        from .cache import ChunkCache

        self.encoder = encoder
        self.cache = ChunkCache(cache_root)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .embeddings import encode_chunk

        for key, prompt, texts in zip(batch["key"], batch["prompt"], batch["texts"]):
            _kill_point()
            if not self.cache.has(key):  # a retried chunk may have been written before its worker died
                vectors = encode_chunk(self.encoder, [str(t) for t in texts], str(prompt) or None)
                self.cache.put(key, vectors)
        return {"key": batch["key"], "texts": [len(t) for t in batch["texts"]]}


def encode_chunks(settings: RaySettings, encoder: Any, chunks: list[tuple[str, str | None, list[str]]],
                  cache_root: Path, tick: Callable[[int], None]) -> None:
    """Encode ``(key, prompt, texts)`` chunks on the cluster into the chunk cache at ``cache_root``, which the
    workers must see at the same path. Every chunk is in the cache when this returns."""
    from .cache import ChunkCache

    if not chunks:
        return
    items = [{"key": key, "prompt": prompt or "", "texts": texts} for key, prompt, texts in chunks]
    _run(settings, items, _EncodeWorker, {"encoder": encoder, "cache_root": str(Path(cache_root).resolve())},
         lambda row: tick(int(row["texts"])))
    cache = ChunkCache(cache_root)
    lost = [key for key, _, _ in chunks if not cache.has(key)]
    if lost:
        raise MinenegsError(f"{len(lost)} chunks the Ray workers encoded are not in {cache_root}: --cache-dir must "
                            "be a folder every node of the cluster shares at the same path")


# -- retrieval -----------------------------------------------------------------------------------------------
class _RetrieveWorker:
    """A retrieval actor: opens the index (and BM25) once, then writes the pool rows of query batches."""

    def __init__(self, embeddings: str, params: Any, parts: str) -> None:
        from .embeddings import Embeddings
        from .pool import Retrieval

        self.retrieval = Retrieval(Embeddings(embeddings), params)
        self.parts = Path(parts)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .pool import write_part

        rows = []
        for start, stop in zip(batch["start"], batch["stop"]):
            _kill_point()
            rows.append(write_part(self.parts, int(start), self.retrieval.batch(int(start), int(stop))))
        return {"stop": batch["stop"], "rows": rows}


def retrieve_batches(settings: RaySettings, embeddings: Path, params: Any, batches: list[tuple[int, int]],
                     parts: Path, progress: Callable[[int], None]) -> None:
    """Write each ``(start, stop)`` query batch's pool rows to a part file under ``parts`` (a folder every node
    shares), calling ``progress(queries)`` as batches finish."""
    items = [{"start": start, "stop": stop} for start, stop in batches]
    sizes = {stop: stop - start for start, stop in batches}
    _run(settings, items, _RetrieveWorker,
         {"embeddings": str(Path(embeddings).resolve()), "params": params, "parts": str(Path(parts).resolve())},
         lambda row: progress(sizes[int(row["stop"])]))
