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
from ..records import Dataset, TextTable, setting
from .cache import ChunkCache, default_cache_dir, plan_chunks, settings_key
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


@dataclass
class _Unit:
    """Unique texts encoded together under one prompt, and the rows of each side that take their vectors.

    ``targets[side] = (rows, text_index)``: row ``rows[k]`` of that side gets text ``text_index[k]``'s vector.
    """

    prompt: str | None
    texts: list[str]
    targets: dict[str, tuple[np.ndarray, np.ndarray]]


def _plan_units(tables: dict[str, TextTable], prompts: dict[str, str | None]) -> list[_Unit]:
    """One unit per side, in order. A text already in an earlier unit with the same prompt is taken from it,
    so it is encoded once; a side's own chunks never depend on a later side, so changing the query prompt
    leaves the corpus cache intact."""
    units: list[tuple[_Unit, dict[str, int]]] = []
    for side, table in tables.items():
        prompt = prompts[side]
        earlier = [(u, index) for u, index in units if u.prompt == prompt]
        own: dict[str, int] = {}
        own_rows: list[int] = []
        own_idx: list[int] = []
        borrowed: dict[int, tuple[list[int], list[int]]] = {}
        for row, text in enumerate(table.texts):
            for k, (_, index) in enumerate(earlier):
                if text in index:
                    rows, idx = borrowed.setdefault(k, ([], []))
                    rows.append(row)
                    idx.append(index[text])
                    break
            else:
                own_rows.append(row)
                own_idx.append(own.setdefault(text, len(own)))
        for k, (rows, idx) in borrowed.items():
            earlier[k][0].targets[side] = (np.asarray(rows, dtype=np.int64), np.asarray(idx, dtype=np.int64))
        unit = _Unit(prompt, list(own), {side: (np.asarray(own_rows, dtype=np.int64),
                                                np.asarray(own_idx, dtype=np.int64))})
        units.append((unit, own))
    return [u for u, _ in units]


class _Scatter:
    """Writes each chunk's vectors to every row, on each side, whose text is in the chunk."""

    def __init__(self, order: list[int], targets: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        pos_of_text = np.empty(len(order), dtype=np.int64)
        pos_of_text[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
        self.sides = {}
        for side, (rows, text_index) in targets.items():
            pos = pos_of_text[text_index] if len(text_index) else text_index
            perm = np.argsort(pos, kind="stable")
            self.sides[side] = (rows[perm], pos[perm])

    def __call__(self, outputs: dict[str, np.ndarray], start: int, stop: int, vectors: np.ndarray) -> None:
        for side, (rows, sorted_pos) in self.sides.items():
            lo, hi = np.searchsorted(sorted_pos, [start, stop])
            if hi > lo:
                outputs[side][rows[lo:hi]] = vectors[sorted_pos[lo:hi] - start]


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
    fingerprint = encoder.fingerprint()
    settings = encoder.settings()
    tables = {"corpus": dataset.corpus, "queries": dataset.queries}
    groups = _plan_units(tables, {"corpus": corpus_prompt, "queries": query_prompt})

    plans = []
    for group in groups:
        skey = settings_key(fingerprint, settings, group.prompt)
        order, chunks = plan_chunks(group.texts, skey, chunk_size)
        plans.append((group, order, chunks))
    missing = [c for _, _, chunks in plans for c in chunks if not cache.has(c.key)]
    total = sum(c.stop - c.start for c in missing)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if hasattr(encoder, "plan") and missing:
        encoder.plan(total, cache.root)
    load_seconds = 0.0
    if missing and ray is None and hasattr(encoder, "load"):  # load the model outside the encode timing
        t0 = time.perf_counter()
        encoder.load()
        load_seconds = time.perf_counter() - t0
    if progress is not None:
        progress(0, total)
    encode_seconds = 0.0
    if ray is not None and missing:
        from .on_ray import encode_chunks

        t0 = time.perf_counter()
        wanted = {c.key for c in missing}
        jobs = [(c.key, group.prompt, [group.texts[i] for i in order[c.start:c.stop]])
                for group, order, chunks in plans for c in reversed(chunks) if c.key in wanted]
        encode_chunks(ray, encoder, jobs, cache.root, tick)
        encode_seconds = time.perf_counter() - t0
    dim: int | None = None
    parts = shard_bounds(len(dataset.corpus), shards) if shards > 1 else []
    with output_dir(out, force) as stage:
        names = shard_names(len(parts))
        files = {stage / "queries.npy": len(dataset.queries),
                 **({stage / name / "corpus.npy": hi - lo for name, (lo, hi) in zip(names, parts)} if parts
                    else {stage / "corpus.npy": len(dataset.corpus)})}
        for group, order, chunks in plans:
            scatter = _Scatter(order, group.targets)
            for chunk in reversed(chunks):  # longest texts first: later, smaller batches reuse freed memory
                vectors = cache.get(chunk.key)
                if vectors is None:
                    t0 = time.perf_counter()
                    texts = [group.texts[i] for i in order[chunk.start:chunk.stop]]
                    vectors = encode_chunk(encoder, texts, group.prompt, tick)
                    encode_seconds += time.perf_counter() - t0
                    cache.put(chunk.key, vectors)
                if dim is None:
                    dim = int(vectors.shape[1])
                    for path, rows in files.items():
                        path.parent.mkdir(parents=True, exist_ok=True)
                        np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, dim)).flush()
                elif vectors.shape[1] != dim:
                    raise MinenegsError(f"cached chunk {chunk.key} has dimension {vectors.shape[1]}, not {dim}; "
                                        "clear the cache folder")
                # mapped afresh for each chunk: written pages leave this process's memory once it is done
                maps = [np.load(path, mmap_mode="r+") for path in files]
                outputs = {"queries": maps[0], "corpus": as_one(maps[1:])}
                scatter(outputs, chunk.start, chunk.stop, _normalized(vectors) if normalize else vectors)
                for array in outputs.values():
                    array.flush()
                del outputs
        if dim is None:
            raise MinenegsError("nothing to encode: the dataset has no texts")
        _write_table(stage / "queries.parquet", {"id": tables["queries"].ids, "text": tables["queries"].texts})
        corpus = tables["corpus"]
        for name, (lo, hi) in zip(names, parts) if parts else [(".", (0, len(corpus)))]:
            _write_table(stage / name / "corpus.parquet", {"id": corpus.ids[lo:hi], "text": corpus.texts[lo:hi]})
        _write_table(stage / "qrels.parquet", {
            "query_id": [q.query_id for q in dataset.qrels],
            "doc_id": [q.doc_id for q in dataset.qrels],
            "score": np.asarray([q.score for q in dataset.qrels], dtype=np.int32),
        })
        summary = EncodeSummary(
            out=str(out), model=encoder.name, fingerprint=fingerprint, precision=str(settings.get("precision")),
            dim=dim, docs=len(dataset.corpus), queries=len(dataset.queries), qrels=len(dataset.qrels),
            unique_texts=sum(len(g.texts) for g in groups), chunks=sum(len(c) for _, _, c in plans),
            chunks_cached=sum(len(c) for _, _, c in plans) - len(missing), texts_encoded=done,
            load_seconds=round(load_seconds, 3), encode_seconds=round(encode_seconds, 3), seconds=0.0,
            compiled=bool(getattr(encoder, "compiled", False)), compile_error=getattr(encoder, "compile_error", None),
        )
        sharded = {}
        if parts:  # each shard names this encode: a shard from another one is refused when the folder is opened
            digest = hashlib.sha256(json.dumps([fingerprint, settings, corpus_prompt, normalize, dtype, dim],
                                               sort_keys=True).encode())
            for doc_id in corpus.ids:
                digest.update(doc_id.encode("utf-8") + b"\x1f")
            sharded = {"encode": digest.hexdigest(),
                       "shards": [{"folder": name, "rows": hi - lo} for name, (lo, hi) in zip(names, parts)]}
            for name, (lo, hi) in zip(names, parts):
                write_manifest(stage / name, {"kind": SHARD_KIND, "encode": sharded["encode"], "rows": hi - lo,
                                              "offset": lo, "dim": dim, "dtype": dtype})
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
            "count": {"corpus": len(dataset.corpus), "queries": len(dataset.queries), "qrels": len(dataset.qrels)},
            "sources": dataset.sources,
            **sharded,
        })
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
