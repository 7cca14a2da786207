"""The embeddings stage: encode a dataset once, into a folder later stages memory-map.

Folder layout (``kind: embeddings``)::

    manifest.json      model, fingerprint, prompts, settings, dimension, counts, input hashes
    corpus.npy         float32 (or float16, ``dtype`` in the manifest) [n_docs, dim], row i is corpus.parquet row i
    corpus.parquet     id, text
    queries.npy        same dtype [n_queries, dim]
    queries.parquet    id, text
    qrels.parquet      query_id, doc_id, score

Identical texts with the same prompt are encoded once (across corpus and queries alike), and every
encoded chunk goes through the :class:`~minenegs.encode.cache.ChunkCache` first.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import check_output, output_dir, write_manifest
from ..errors import MinenegsError
from ..records import Dataset, setting
from .cache import ChunkCache, default_cache_dir, plan_chunks, settings_key, text_hash
from .folder import KIND, SHARD_KIND, as_one, shard_bounds, shard_names
from .models import Encoder, encode_chunk

if TYPE_CHECKING:
    from ..distributed.runner import RaySettings

DTYPES = ("float32", "float16")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EncodeSettings:
    """How texts become stored vectors: :func:`encode_dataset`'s keyword settings, as the command line sets them."""

    query_prompt: str | None = setting(help="Prefix for queries, e.g. 'query: '.")
    corpus_prompt: str | None = setting(help="Prefix for documents, e.g. 'passage: '.")
    normalize: bool = setting(True, "Store unit-length vectors (cosine scores).", flag="--normalize/--no-normalize")
    chunk_size: int = setting(1024, "Texts per cached chunk (the unit of resume).", min=1)
    dtype: str = setting("float32", "float32, or float16: half the disk and memory, scores within about 1e-3 (see the "
                         "README's sizing table).", choices=DTYPES)
    cache_dir: Path | None = setting(help="Embedding cache [default: $MINENEGS_CACHE, else ~/.cache/minenegs].")
    shards: int = setting(1, "Store the corpus as this many shard folders (vectors, ids, texts; the queries stay one "
                          "table): `mine --shards` with as many gives each worker one shard's files.", min=1,
                          panel="Input and output")


@dataclass
class EncodeSummary:
    out: str
    model: str
    fingerprint: str
    precision: str
    dim: int
    docs: int
    queries: int
    qrels: int
    unique_texts: int
    chunks: int
    chunks_cached: int
    texts_encoded: int
    load_seconds: float
    encode_seconds: float
    seconds: float
    compiled: bool = False  # torch.compile ran the model (SentenceTransformerEncoder.compile)
    compile_error: str | None = None  # why compiling was given up for the uncompiled model, if it was

    @property
    def texts_per_second(self) -> float:
        return self.texts_encoded / self.encode_seconds if self.encode_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "texts_per_second": round(self.texts_per_second, 2)}
        return out if self.compile_error else {k: v for k, v in out.items() if k != "compile_error"}


class _Seen:
    """The corpus texts stored so far, by text hash: a later shard or the queries (under the same prompt) take
    their vectors from there instead of encoding them again. 24 bytes a document."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, their global rows)

    def add(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self.parts.append((hashes[order], rows[order]))

    def rows(self, hashes: np.ndarray) -> np.ndarray:
        """Each hash's global row, -1 where none has it."""
        out = np.full(len(hashes), -1, dtype=np.int64)
        for known, rows in self.parts:
            at = np.minimum(np.searchsorted(known, hashes), max(len(known) - 1, 0))
            hit = (out < 0) & (known[at] == hashes) if len(known) else np.zeros(len(hashes), dtype=bool)
            out[hit] = rows[at[hit]]
        return out


class _Job:
    """Encodes one side of the dataset at a time (a corpus shard, or the queries) into its vector file: its own
    unique texts through the chunk cache (and the model, or the Ray cluster, for chunks not cached), the rest
    copied from rows stored earlier. ``pending`` bounds the texts left to encode, made exact as sides are
    planned."""

    def __init__(self, encoder: Encoder, cache: ChunkCache, chunk_size: int, pending: int, normalize: bool,
                 dtype: str, ray: "RaySettings | None", progress: Progress | None) -> None:
        self.encoder, self.cache, self.chunk_size, self.pending = encoder, cache, chunk_size, pending
        self.normalize, self.dtype, self.ray, self.progress = normalize, dtype, ray, progress
        self.fingerprint, self.settings = encoder.fingerprint(), encoder.settings()
        self.dim: int | None = None
        self.done = self.unique = self.chunks = self.cached = 0
        self.load_seconds = self.encode_seconds = 0.0
        self.started = False

    def tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.done + self.pending)

    def side(self, texts: list[str], prompt: str | None, path: Path, seen: _Seen | None, stored: list[Path]) -> np.ndarray:
        """Encode ``texts`` into the new vector file ``path``; texts ``seen`` (by hash) are copied from the
        ``stored`` vector files. Returns the texts' hashes."""
        raw = [text_hash(t) for t in texts]
        hashes = np.array(raw, dtype="S16")
        earlier = seen.rows(hashes) if seen is not None and len(texts) else np.full(len(texts), -1, dtype=np.int64)
        index: dict[bytes, int] = {}
        own = np.flatnonzero(earlier < 0)
        own_index = np.fromiter((index.setdefault(raw[i], len(index)) for i in own), dtype=np.int64, count=len(own))
        first = own[np.unique(own_index, return_index=True)[1]]
        unique = [texts[i] for i in first]
        order, chunks = plan_chunks(unique, settings_key(self.fingerprint, self.settings, prompt), self.chunk_size,
                                    [raw[i] for i in first])
        missing = [c for c in chunks if not self.cache.has(c.key)]
        self.pending -= len(texts) - sum(c.stop - c.start for c in missing)
        self.unique, self.chunks, self.cached = self.unique + len(unique), self.chunks + len(chunks), self.cached + len(chunks) - len(missing)
        if missing:
            self._start()
        self.tick(0)
        if self.ray is not None and missing:
            from .on_ray import encode_chunks

            t0 = time.perf_counter()
            jobs = [(c.key, prompt, [unique[i] for i in order[c.start:c.stop]]) for c in reversed(missing)]
            encode_chunks(self.ray, self.encoder, jobs, self.cache.root, self.tick)
            self.encode_seconds += time.perf_counter() - t0
        scatter = _Scatter(order, own, own_index)
        for chunk in reversed(chunks):  # longest texts first: later, smaller batches reuse freed memory
            vectors = self.cache.get(chunk.key)
            if vectors is None:
                t0 = time.perf_counter()
                vectors = encode_chunk(self.encoder, [unique[i] for i in order[chunk.start:chunk.stop]], prompt,
                                       self.tick)
                self.encode_seconds += time.perf_counter() - t0
                self.cache.put(chunk.key, vectors)
            if self.dim is None:
                self.dim = int(vectors.shape[1])
            elif vectors.shape[1] != self.dim:
                raise MinenegsError(f"cached chunk {chunk.key} has dimension {vectors.shape[1]}, not {self.dim}; "
                                    "clear the cache folder")
            output = self._open(path, len(texts))  # mapped afresh: written pages leave this process once done
            scatter(output, chunk.start, chunk.stop, _normalized(vectors) if self.normalize else vectors)
            output.flush()
            del output
        if self.dim is not None:
            output = self._open(path, len(texts))
            taken = np.flatnonzero(earlier >= 0)
            if len(taken):
                output[taken] = as_one([np.load(f, mmap_mode="r") for f in stored])[earlier[taken]]
            output.flush()
        return hashes

    def _start(self) -> None:
        """Before the first text is encoded: whether the model is compiled, and its load (outside the timing)."""
        if self.started:
            return
        self.started = True
        if hasattr(self.encoder, "plan"):
            self.encoder.plan(self.pending, self.cache.root)
        if self.ray is None and hasattr(self.encoder, "load"):
            t0 = time.perf_counter()
            self.encoder.load()
            self.load_seconds = time.perf_counter() - t0

    def _open(self, path: Path, rows: int) -> np.ndarray:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=(rows, self.dim)).flush()
        return np.load(path, mmap_mode="r+")


class _Scatter:
    """Writes each chunk's vectors to every row whose text is in the chunk: row ``rows[k]`` takes unique text
    ``text_index[k]``'s vector."""

    def __init__(self, order: list[int], rows: np.ndarray, text_index: np.ndarray) -> None:
        pos_of_text = np.empty(len(order), dtype=np.int64)
        pos_of_text[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
        pos = pos_of_text[text_index] if len(text_index) else text_index
        perm = np.argsort(pos, kind="stable")
        self.rows, self.sorted_pos = rows[perm], pos[perm]

    def __call__(self, output: np.ndarray, start: int, stop: int, vectors: np.ndarray) -> None:
        lo, hi = np.searchsorted(self.sorted_pos, [start, stop])
        if hi > lo:
            output[self.rows[lo:hi]] = vectors[self.sorted_pos[lo:hi] - start]


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _write_table(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


def encode_dataset(
    dataset: Dataset,
    out: Path | str,
    encoder: Encoder,
    *,
    cache_dir: Path | str | None = None,
    query_prompt: str | None = None,
    corpus_prompt: str | None = None,
    normalize: bool = True,
    chunk_size: int = 1024,
    force: bool = False,
    progress: Progress | None = None,
    dtype: str = "float32",
    shards: int = 1,
    ray: "RaySettings | None" = None,
) -> EncodeSummary:
    """Encode ``dataset`` into the embeddings folder ``out``, reusing every cached chunk.

    ``dtype="float16"`` stores the vectors at half the size (the cache keeps float32, so switching back costs
    no encoding); every later stage reads them as float32.

    ``progress(done, total)`` is called as texts get encoded (cached ones do not count).

    With ``ray``, the chunks not cached are encoded on a Ray cluster into the cache (which its workers must
    share), then the folder is written from the cache: the same folder as a local run.

    ``shards`` > 1 stores the corpus as that many shard folders (:mod:`.folder`), each with its rows' vectors,
    ids and texts and a manifest naming this encode; the vectors are the same as unsharded.
    """
    started = time.perf_counter()
    out = Path(out)
    check_output(out, force)
    if chunk_size < 1:
        raise MinenegsError(f"chunk size {chunk_size} must be at least 1")
    if dtype not in DTYPES:
        raise MinenegsError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if shards < 1:
        raise MinenegsError(f"--shards {shards}: must be at least 1")
    cache = ChunkCache(cache_dir if cache_dir is not None else default_cache_dir())
    corpus, queries = dataset.corpus, dataset.queries
    parts = shard_bounds(len(corpus), shards) if shards > 1 else [(0, len(corpus))]
    names = shard_names(len(parts)) if shards > 1 else ["."]
    job = _Job(encoder, cache, chunk_size, len(corpus) + len(queries), normalize, dtype, ray, progress)
    ids = hashlib.sha256()
    with output_dir(out, force) as stage:
        seen, stored = _Seen(), []
        for name, (lo, hi) in zip(names, parts):  # a shard's texts are held while it is encoded, then let go
            table = corpus.rows(lo, hi)
            (stage / name).mkdir(parents=True, exist_ok=True)
            _write_table(stage / name / "corpus.parquet", {"id": table.ids, "text": table.texts})
            hashes = job.side(table.texts, corpus_prompt, stage / name / "corpus.npy", seen, stored)
            seen.add(hashes, np.arange(lo, hi, dtype=np.int64))
            stored.append(stage / name / "corpus.npy")
            for doc_id in table.ids:
                ids.update(doc_id.encode("utf-8") + b"\x1f")
            del table
        job.side(queries.texts, query_prompt, stage / "queries.npy", seen if query_prompt == corpus_prompt else None,
                 stored)
        if job.dim is None:
            raise MinenegsError("nothing to encode: the dataset has no texts")
        dim = job.dim
        _write_table(stage / "queries.parquet", {"id": queries.ids, "text": queries.texts})
        _write_table(stage / "qrels.parquet", {
            "query_id": [q.query_id for q in dataset.qrels],
            "doc_id": [q.doc_id for q in dataset.qrels],
            "score": np.asarray([q.score for q in dataset.qrels], dtype=np.int32),
        })
        fingerprint, settings = job.fingerprint, job.settings
        summary = EncodeSummary(
            out=str(out), model=encoder.name, fingerprint=fingerprint, precision=str(settings.get("precision")),
            dim=dim, docs=len(corpus), queries=len(queries), qrels=len(dataset.qrels), unique_texts=job.unique,
            chunks=job.chunks, chunks_cached=job.cached, texts_encoded=job.done,
            load_seconds=round(job.load_seconds, 3), encode_seconds=round(job.encode_seconds, 3), seconds=0.0,
            compiled=bool(getattr(encoder, "compiled", False)), compile_error=getattr(encoder, "compile_error", None),
        )
        sharded = {}
        if shards > 1:  # each shard names this encode: a shard from another one is refused when the folder is opened
            encode = hashlib.sha256(json.dumps([fingerprint, settings, corpus_prompt, normalize, dtype, dim,
                                                ids.hexdigest()], sort_keys=True).encode()).hexdigest()
            sharded = {"encode": encode,
                       "shards": [{"folder": name, "rows": hi - lo} for name, (lo, hi) in zip(names, parts)]}
            for name, (lo, hi) in zip(names, parts):
                write_manifest(stage / name, {"kind": SHARD_KIND, "encode": encode, "rows": hi - lo, "offset": lo,
                                              "dim": dim, "dtype": dtype})
        write_manifest(stage, {
            "kind": KIND,
            "format_version": 1,
            "model": encoder.name,
            "fingerprint": fingerprint,
            **{k: v for k, v in settings.items()},
            "query_prompt": query_prompt,
            "corpus_prompt": corpus_prompt,
            "normalize": normalize,
            "dtype": dtype,
            "dim": dim,
            "count": {"corpus": len(corpus), "queries": len(queries), "qrels": len(dataset.qrels)},
            "sources": dataset.sources,
            **sharded,
        })
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
