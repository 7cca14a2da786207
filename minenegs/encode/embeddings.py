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
from ..records import Dataset
from ..settings import setting
from .cache import ChunkCache, default_cache_dir
from .folder import KIND, SHARD_KIND, as_one
from .batches import encode_chunk
from .models import Encoder
from .plan import Scatter, Side, plan_sides, ray_job

if TYPE_CHECKING:
    from ..distributed.runner import RaySettings

DTYPES = ("float32", "float16")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EncodeSettings:
    """Where and how texts become stored vectors: :func:`minenegs.api.encode`'s ``output`` and
    :func:`encode_dataset`'s keyword settings, as the command line sets them."""

    output: Path = setting(..., "The embeddings folder to write.", short="-o", panel="Input and output")
    force: bool = setting(False, "Replace an existing output.", panel="Input and output")
    query_prompt: str | None = setting(help="Prefix for queries, e.g. 'query: '.")
    corpus_prompt: str | None = setting(help="Prefix for documents, e.g. 'passage: '.")
    normalize: bool = setting(True, "Store unit-length vectors (cosine scores).", flag="--normalize/--no-normalize")
    chunk_size: int = setting(1024, "Texts per cached chunk (the unit of resume).", min=1)
    dtype: str = setting("float32", "float32, or float16: half the disk and memory, scores within about 1e-3 (see the "
                         "README's sizing table).", choices=DTYPES)
    cache_dir: Path | None = setting(help="Embedding cache [default: $MINENEGS_CACHE, else ~/.cache/minenegs].")
    shards: int = setting(1, "Store the corpus as this many shard folders (vectors, ids, texts; the queries stay one "
                          "table), encoded one at a time from a corpus file read in blocks, so one shard's texts are "
                          "held: `mine --shards` with as many gives each worker one shard's files.", min=1,
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


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _write_table(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


class _Store:
    """Writes one side's vector file: each chunk from the cache, or encoded (and cached) when missing, scattered to
    its rows; then the rows copied from earlier stored files."""

    def __init__(self, encoder: Encoder, cache: ChunkCache, normalize: bool, dtype: str, tick: Callable[[int], None]):
        self.encoder, self.cache, self.normalize, self.dtype, self.tick = encoder, cache, normalize, dtype, tick
        self.dim: int | None = None
        self.encode_seconds = 0.0

    def __call__(self, side: Side, texts: list[str], path: Path, stored: list[Path]) -> None:
        """``texts``: the side's unique texts (``side.unique``'s)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        scatter = Scatter(side)
        for chunk in reversed(side.chunks):  # longest texts first: later, smaller batches reuse freed memory
            vectors = self.cache.get(chunk.key)
            if vectors is None:
                t0 = time.perf_counter()
                vectors = encode_chunk(self.encoder, [texts[i] for i in side.order[chunk.start:chunk.stop]],
                                       side.prompt, self.tick)
                self.encode_seconds += time.perf_counter() - t0
                self.cache.put(chunk.key, vectors)
            if self.dim is None:
                self.dim = int(vectors.shape[1])
            elif vectors.shape[1] != self.dim:
                raise MinenegsError(f"cached chunk {chunk.key} has dimension {vectors.shape[1]}, not {self.dim}; "
                                    "clear the cache folder")
            output = self._open(path, side.count)  # mapped afresh: written pages leave this process once done
            scatter(output, chunk.start, chunk.stop, _normalized(vectors) if self.normalize else vectors)
            output.flush()
            del output
        if self.dim is None:
            raise MinenegsError("nothing to encode: the dataset has no texts")
        output = self._open(path, side.count)
        if len(side.copied):
            output[side.copied] = as_one([np.load(f, mmap_mode="r") for f in stored])[side.sources]
        output.flush()

    def _open(self, path: Path, rows: int) -> np.ndarray:
        """The vector file at ``path``, created (zeros) the first time."""
        if not path.exists():
            np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=(rows, self.dim)).flush()
        return np.load(path, mmap_mode="r+")


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
    ids and texts and a manifest naming this encode. Each shard is planned (:mod:`.plan`), encoded and written
    in turn, holding only its own texts: with a staged corpus (:mod:`minenegs.inputs.staged`), no more are
    read.
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
    fingerprint, settings = encoder.fingerprint(), encoder.settings()
    corpus, queries = dataset.corpus, dataset.queries
    pending = len(corpus) + len(queries)  # at most this many texts left to encode; exact as sides are planned
    done = chunks = cached = unique = 0
    load_seconds = encode_seconds = 0.0
    loading = True  # the model is loaded before the first text encoded

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, done + pending)

    store = _Store(encoder, cache, normalize, dtype, tick)
    ids = hashlib.sha256()
    parts: list[tuple[str, int, int]] = []  # the shards' folders, first rows and row counts
    with output_dir(out, force) as stage:
        stored: list[Path] = []
        for side in plan_sides(corpus, queries, shards, corpus_prompt, query_prompt, fingerprint, settings, chunk_size):
            missing = [c for c in side.chunks if not cache.has(c.key)]
            pending -= side.count - sum(c.stop - c.start for c in missing)
            chunks, cached = chunks + len(side.chunks), cached + len(side.chunks) - len(missing)
            unique += len(side.unique)
            if missing and loading:  # before the first text: whether to compile, and the model's load (untimed)
                loading = False
                if hasattr(encoder, "plan"):
                    encoder.plan(pending, cache.root)
                if ray is None and hasattr(encoder, "load"):
                    t0 = time.perf_counter()
                    encoder.load()
                    load_seconds = time.perf_counter() - t0
            tick(0)
            if ray is not None and missing:
                from .on_ray import encode_chunks

                t0 = time.perf_counter()
                encode_chunks(ray, encoder, [ray_job(side, c, corpus, queries) for c in reversed(missing)], cache.root,
                              tick)
                encode_seconds += time.perf_counter() - t0
            # this side's texts are held while it is written (a shard's, when the corpus is staged)
            table = corpus.rows(side.lo, side.lo + side.count) if side.name != "queries" else queries
            path = stage / "queries.npy" if side.name == "queries" else stage / side.name / "corpus.npy"
            store(side, [table.texts[i] for i in side.unique], path, stored)
            if side.name != "queries":
                _write_table(path.parent / "corpus.parquet", {"id": table.ids, "text": table.texts})
                stored.append(path)
                parts.append((side.name, side.lo, side.count))
                for doc_id in table.ids:
                    ids.update(doc_id.encode("utf-8") + b"\x1f")
            del table, side  # the next side's plan and texts replace them
        _write_table(stage / "queries.parquet", {"id": queries.ids, "text": queries.texts})
        _write_table(stage / "qrels.parquet", {
            "query_id": [q.query_id for q in dataset.qrels],
            "doc_id": [q.doc_id for q in dataset.qrels],
            "score": np.asarray([q.score for q in dataset.qrels], dtype=np.int32),
        })
        dim, encode_seconds = store.dim, encode_seconds + store.encode_seconds
        summary = EncodeSummary(
            out=str(out), model=encoder.name, fingerprint=fingerprint, precision=str(settings.get("precision")),
            dim=dim, docs=len(corpus), queries=len(queries), qrels=len(dataset.qrels),
            unique_texts=unique, chunks=chunks, chunks_cached=cached, texts_encoded=done,
            load_seconds=round(load_seconds, 3), encode_seconds=round(encode_seconds, 3), seconds=0.0,
            compiled=bool(getattr(encoder, "compiled", False)), compile_error=getattr(encoder, "compile_error", None),
        )
        sharded = {}
        if shards > 1:  # each shard names this encode: a shard from another one is refused when the folder is opened
            encode = hashlib.sha256(json.dumps([fingerprint, settings, corpus_prompt, normalize, dtype, dim,
                                                ids.hexdigest()], sort_keys=True).encode()).hexdigest()
            sharded = {"encode": encode, "shards": [{"folder": name, "rows": rows} for name, _, rows in parts]}
            for name, lo, rows in parts:
                write_manifest(stage / name, {"kind": SHARD_KIND, "encode": encode, "rows": rows, "offset": lo,
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
