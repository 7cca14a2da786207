"""``mine_hard_negatives``: sentence-transformers' function of that name, on minenegs' cache, pool and filters.

One call, a ``datasets.Dataset`` in and one out, with sentence-transformers 6.x's argument names and meanings
for what the two share. Underneath it is the ordinary pipeline: an embeddings folder and a candidate pool under
the cache folder, keyed by the model, the prompts and the texts, so a second call with other thresholds reuses
both and only selects again.

Where the two differ, on purpose:

- ``range_min`` skips the best *original* ranks (sentence-transformers skips the best candidates left after its
  filters, so a margin moves its window).
- ``sampling_strategy="random"`` draws with minenegs' seeded sampler (``seed``); the same seed gives the same
  rows, but not sentence-transformers' (unseeded) rows.
- A ``cross_encoder`` filters with minenegs' thresholds on its probability (``ce_max``, ``promote``), not by
  replacing the dense scores under the margins; it is given by name or folder.
- What changed between sentence-transformers releases follows the one installed: from 6.3 on, a corpus text
  equal to the query's own is never its candidate, and one more candidate per query is retrieved (range_max +
  the most positives of a query + 1: with filters and few negatives, one candidate more can be handed out).
  Before 6.3, neither (:func:`st_behaviour`).
- Arguments with no equivalent (``include_positives=True``, ``use_multi_process``, a ``faiss_batch_size`` other
  than the default) raise ``TypeError`` naming them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import recipe as recipes
from .artifacts import text_hash
from .encode.cache import default_cache_dir
from .errors import InputError
from .records import Dataset, Qrel, TextTable
from .select.filters import REGISTRY, needs_judge
from .write.outputs import ST_FORMATS, Shape, output_rows

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
_ST_FAISS_BATCH = 16384


class STBehaviour(NamedTuple):
    """What the installed sentence-transformers' ``mine_hard_negatives`` does where releases differ."""

    version: tuple[int, ...]
    extra_candidates: int  # retrieved beyond range_max + the most positives of a query
    skips_query_text: bool  # a corpus text equal to the query's own is not its candidate


def st_behaviour(version: str | None = None) -> STBehaviour:
    """The behaviour of sentence-transformers ``version`` (default: the installed one); 6.3 changed both."""
    if version is None:
        from importlib.metadata import version as installed

        version = installed("sentence-transformers")
    parts = tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])
    since_6_3 = parts >= (6, 3)
    return STBehaviour(parts, 1 if since_6_3 else 0, since_6_3)


def _no_equivalent(name: str, why: str) -> TypeError:
    return TypeError(f"mine_hard_negatives() argument {name!r} has no equivalent in minenegs: {why}")


def _columns(dataset: Any) -> tuple[list[str], dict[str, list]]:
    """Column names in order and the columns, from a ``datasets.Dataset`` or a list of dicts."""
    if hasattr(dataset, "column_names") and hasattr(dataset, "to_dict"):
        return list(dataset.column_names), dataset.to_dict()
    if isinstance(dataset, list) and all(isinstance(row, dict) for row in dataset):
        names = list(dataset[0]) if dataset else []
        return names, {name: [row.get(name) for row in dataset] for name in names}
    raise TypeError("mine_hard_negatives() takes a datasets.Dataset or a list of dicts as its dataset")


def _encoder(model: Any, precision: str, batch_size: int):
    from .encode.models import LoadedEncoder, SentenceTransformerEncoder

    if model is None or isinstance(model, (str, Path)):
        return SentenceTransformerEncoder(None if model is None else str(model), precision=precision,
                                          batch_size=batch_size,
                                          fingerprint_memo=default_cache_dir() / "fingerprints.json")
    if hasattr(model, "encode") and hasattr(model, "state_dict"):
        return LoadedEncoder(model, precision=precision, batch_size=batch_size)
    raise TypeError("mine_hard_negatives() takes a SentenceTransformer, a model name or a folder as its model")


def _prompt(model: Any, prompt: str | None, name: str | None, default_name: str) -> str | None:
    """What sentence-transformers' ``encode_query``/``encode_document`` would prepend."""
    if prompt is not None:
        return prompt
    prompts = getattr(model, "prompts", None) or {}
    if name is not None:
        if name not in prompts:
            raise InputError(f"prompt name {name!r} is not among the model's prompts {sorted(prompts)}")
        return prompts[name]
    return prompts.get(default_name) or None


def mine_hard_negatives(
    dataset: Any,
    model: Any = None,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: list[str] | None = None,
    cross_encoder: str | None = None,
    range_min: int = 0, range_max: int | None = None,
    max_score: float | None = None, min_score: float | None = None,
    absolute_margin: float | None = None, relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: str = "top",
    query_prompt_name: str | None = None, query_prompt: str | None = None,
    corpus_prompt_name: str | None = None, corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: str = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = _ST_FAISS_BATCH,
    use_faiss: bool = False,
    use_multi_process: bool | list[str] = False,
    verbose: bool = True,
    cache_folder: str | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    recipe: str | None = None,
    strategy: str | None = None,
    seed: int = 0,
    ce_batch_size: int = 64,
    simans_a: float | None = None,
    simans_b: float | None = None,
    index: str = "flat",
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    judges: list[Any] | None = None,
    judge_mode: str = "veto",
    judge_depth: int = 30,
    judge_budget: int | None = None,
    judge_action: str = "drop",
    judge_max_flagged: int | None = None,
    judge_guard: bool = True,
    **filters: float | None,
):
    """Add hard negatives to (anchor, positive) pairs; a drop-in for
    ``sentence_transformers.util.mine_hard_negatives`` (see the module's notes for what differs).

    The shared arguments mean what they mean there. minenegs' own, keyword-only: ``recipe="default"`` adds the
    default recipe's filters (:mod:`minenegs.recipe`: duplicates of a positive, the positive-similarity guard),
    ``strategy`` (``top``, ``random`` or ``simans``; overrides ``sampling_strategy``), ``seed``, any filter of the
    registry by its name (``dup_threshold=``, ``duplicate_text=``, ``max_positive_similarity=``, the
    cross-encoder's ``ce_max=`` and ``promote=``, ...), ``ce_batch_size``, ``simans_a``/``simans_b``, ``index``
    (``flat``, ``ivf``, ``hnsw`` or ``auto``), ``precision`` (``fp32``, as sentence-transformers encodes, or
    ``auto``/``bf16``) and ``cache_dir`` (``cache_folder`` is its alias). ``judges`` (specs as for ``--judge``:
    ``"llm:MODEL@URL"``, ``"cross-encoder:NAME[@T]"``, or judge objects), with ``judge_mode``, ``judge_depth``
    (how many candidates per query any judge looks at, as ``--judge-depth``: 30), ``judge_budget``, ``judge_action``, ``judge_max_flagged`` and ``judge_guard`` (the CLI's ``--judge-*`` options),
    judge the negatives lazily (the README's "Judges").
    Returns a ``datasets.Dataset`` in ``output_format``.
    """
    from . import api
    from .retrieve.index import IndexParams
    from .retrieve.pool import PoolParams
    from .select.judges import CrossEncoderJudge, parse_judge
    from .select.judging import Judging
    from .select.params import MineParams
    from .select.strategies import StrategyParams

    bounds = (absolute_margin, relative_margin, max_score, min_score, margin)
    _refuse(include_positives, use_multi_process, faiss_batch_size, cross_encoder, bounds, filters, recipe)
    output_format = output_format if as_triplets is None else "triplet" if as_triplets else "n-tuple"
    absolute_margin = absolute_margin if margin is None else margin
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format {output_format!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got num_negatives={num_negatives}.")
    anchor, positive, queries, docs, pos_of = _pairs(dataset, anchor_column_name, positive_column_name, corpus)
    most = max(len(p) for p in pos_of)
    wide = any(v is not None for v in (absolute_margin, relative_margin, max_score))
    range_max = _window(range_min, range_max, num_negatives, most, wide)
    encoder = _encoder(model, precision, batch_size)
    prompts = (_prompt(model, query_prompt, query_prompt_name, "query"),
               _prompt(model, corpus_prompt, corpus_prompt_name, "document"))
    root = Path(cache_dir or cache_folder or default_cache_dir())
    given = {"absolute_margin": absolute_margin, "relative_margin": relative_margin, "max_score": max_score,
             "min_score": min_score, **filters}
    thresholds = {k: v for k, v in (recipes.thresholds(given) if recipe else given).items() if v is not None}
    sp = StrategyParams(**{k: v for k, v in {"simans_a": simans_a, "simans_b": simans_b}.items() if v is not None})
    params = MineParams(strategy or sampling_strategy, num_negatives, range_min, None, seed, sp, thresholds, judge_depth)
    st = st_behaviour()
    pool_params = PoolParams(depth=range_max + most + st.extra_candidates, index=IndexParams(index))
    scorer = CrossEncoderJudge(str(cross_encoder), batch_size=ce_batch_size) if cross_encoder else None
    judging = Judging([parse_judge(j) if isinstance(j, str) else j for j in judges or ()], judge_mode, judge_budget,
                      judge_action, judge_max_flagged, judge_guard, scorer=scorer) if judges or scorer else None
    folder = root / "mine_hard_negatives" / _folder_key(encoder, prompts, queries, docs, pos_of)
    doc_row = {text: i for i, text in enumerate(docs)}
    own = np.array([doc_row.get(q, -1) for q in queries]) if st.skips_query_text else None
    sel, emb = api.pairs(_records(queries, docs, pos_of), folder, encoder, params, pool_params, cache_dir=root,
                         prompts=prompts, judging=judging, own_doc=own)
    return _result(sel, emb, pos_of, (output_format, num_negatives, output_scores, anchor, positive), verbose,
                   made_of=[str(folder), repr(params)])


def _refuse(include_positives: bool, use_multi_process: bool | list[str], faiss_batch_size: int, cross_encoder: Any,
            bounds: tuple, filters: dict[str, float | None], recipe: str | None) -> None:
    """What has no equivalent here, or is given wrong: one error naming it."""
    if include_positives:
        raise _no_equivalent("include_positives", "positives are never candidates; rank them with a retrieval "
                             "evaluator instead")
    if use_multi_process:
        raise _no_equivalent("use_multi_process", "encode on several devices with `minenegs encode --ray`")
    if faiss_batch_size != _ST_FAISS_BATCH:
        raise _no_equivalent("faiss_batch_size", "queries are searched 1,024 at a time whatever the index")
    if cross_encoder is not None and not isinstance(cross_encoder, (str, Path)):
        raise TypeError("mine_hard_negatives() takes the cross_encoder's name or saved folder, not the object")
    if cross_encoder is not None and any(v is not None for v in bounds):
        raise _no_equivalent("cross_encoder with margins or score limits", "sentence-transformers applies them to "
                             "the cross-encoder's scores; minenegs applies them to the dense scores and filters "
                             "with ce_max= / promote= on the cross-encoder's probability")
    unknown = sorted(set(filters) - set(REGISTRY))
    if unknown:
        raise TypeError(f"mine_hard_negatives() got an unexpected keyword argument {unknown[0]!r}")
    if recipe not in (None, "default"):
        raise ValueError(f"recipe {recipe!r}: the one recipe is 'default'")
    if cross_encoder is not None and not needs_judge(filters):
        raise TypeError("mine_hard_negatives(): a cross_encoder without ce_max= or promote= would change nothing")


def _pairs(dataset: Any, anchor_name: str | None, positive_name: str | None, corpus: list[str] | None):
    """The anchor and positive columns' names, the queries and the corpus de-duplicated by text in first
    appearance (the corpus holds every positive), and each query's positives as corpus rows."""
    names, cols = _columns(dataset)
    if not cols or not len(cols[names[0]]):
        raise ValueError("The dataset is empty. Please provide a non-empty dataset.")
    anchor = anchor_name if anchor_name in names else names[0]
    if positive_name not in names:
        if len(names) < 2:
            raise ValueError("Dataset must contain at least two columns to select the positive column automatically.")
        positive_name = names[1]
    anchors, positives = [str(a) for a in cols[anchor]], [str(p) for p in cols[positive_name]]
    queries = list(dict.fromkeys(anchors))
    docs = list(dict.fromkeys([*(corpus or []), *positives]))
    doc_row, q_row = {text: i for i, text in enumerate(docs)}, {text: i for i, text in enumerate(queries)}
    pos_of: list[list[int]] = [[] for _ in queries]
    for a, p in zip(anchors, positives):
        if doc_row[p] not in pos_of[q_row[a]]:
            pos_of[q_row[a]].append(doc_row[p])
    return anchor, positive_name, queries, docs, pos_of


def _window(range_min: int, range_max: int | None, num_negatives: int, most_positives: int, wide: bool) -> int:
    """``range_max`` as sentence-transformers defaults it (wider with margins or a score limit), checked."""
    if range_max is None:
        range_max = range_min + num_negatives * (10 if wide else 1) + most_positives
    if range_min < 0 or range_min >= range_max:
        raise ValueError(f"range_min must be non-negative and smaller than range_max, got range_min={range_min} "
                         f"and range_max={range_max}.")
    if num_negatives > range_max - range_min:
        raise ValueError(f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates "
                         f"remain after skipping the first range_min={range_min} of range_max={range_max}.")
    return range_max


def _records(queries: list[str], docs: list[str], pos_of: list[list[int]]) -> Dataset:
    q_ids, d_ids = [f"q{i}" for i in range(len(queries))], [f"d{i}" for i in range(len(docs))]
    qrels = [Qrel(q_ids[qi], d_ids[d]) for qi, rows in enumerate(pos_of) for d in rows]
    return Dataset(TextTable(d_ids, docs), TextTable(q_ids, queries), qrels)


def _result(sel: Any, emb: Any, pos_of: list[list[int]], shape: tuple, verbose: bool, made_of: list[str]):
    """The rows as a ``datasets.Dataset`` in sentence-transformers' columns (``shape``: output format, negatives,
    scores, anchor and positive column names), each query's positives in the order the pairs gave them."""
    import pyarrow as pa
    from datasets import Dataset as HFDataset
    from datasets.table import InMemoryTable

    output_format, num_negatives, output_scores, anchor, positive = shape
    order = [np.argsort([pos_of[int(q)].index(d) for d in ds.tolist()], kind="stable") for q, ds in
             zip(sel.query_idx, sel.positives)]
    sel.positives = [ds[o] for ds, o in zip(sel.positives, order)]
    sel.positive_scores = [ss[o] for ss, o in zip(sel.positive_scores, order)]
    built = list(output_rows(sel, emb, output_format, num_negatives, output_scores,
                             Shape(anchor, positive, "scores", judge=False), ST_FORMATS))
    data = {k: [r[k] for r in built] for k in built[0]} if built else \
        {k: [] for k in _columns_of(output_format, anchor, positive, num_negatives, output_scores)}
    if verbose:
        summary = sel.summary(num_negatives)
        print(f"minenegs: {len(built)} rows ({output_format}); {summary['negatives']:,} "
              f"negatives for {summary['queries']:,} queries, {summary['queries_short']:,} short; "
              f"removed: {sel.removed}", file=sys.stderr)
    # the fingerprint datasets would compute pickles the whole table; what made it names it as well
    key = json.dumps([*made_of, output_format, output_scores, anchor, positive])
    return HFDataset(InMemoryTable(pa.table(data)), fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32])


_FOLDER_KEYS: dict[tuple, str] = {}  # (model, texts as Python hashes them) -> the folder's digest of the texts


def _folder_key(encoder: Any, prompts: tuple, queries: list[str], docs: list[str], pos_of: list[list[int]]) -> str:
    """The embeddings folder's name: a digest of the model, the prompts and every text, stable across
    processes. Within one process it is remembered by Python's own (cached) string hashes, so a second call
    on the same texts does not hash them again."""
    model_key = json.dumps({"model": encoder.fingerprint(), "settings": encoder.settings(), "prompts": list(prompts)},
                           sort_keys=True)
    quick = (model_key, len(queries), len(docs), hash(tuple(queries)), hash(tuple(docs)),
             hash(tuple(map(tuple, pos_of))))
    if quick not in _FOLDER_KEYS:
        digest = hashlib.sha256(model_key.encode())
        for texts in (queries, docs):
            digest.update(len(texts).to_bytes(8, "little"))
            for t in texts:
                digest.update(text_hash(t))
        digest.update(json.dumps(pos_of).encode())
        _FOLDER_KEYS[quick] = digest.hexdigest()[:24]
    return _FOLDER_KEYS[quick]


def _columns_of(fmt: str, anchor: str, positive: str, n: int, scores: bool) -> list[str]:
    """The columns of an empty result, as sentence-transformers names them."""
    rest = {"triplet": ["negative"], "n-tuple": [f"negative_{i}" for i in range(1, n + 1)],
            "labeled-pair": ["score" if scores else "label"], "labeled-list": ["scores" if scores else "labels"]}[fmt]
    return [anchor, positive, *rest, *(["scores"] if scores and fmt in ("triplet", "n-tuple") else [])]
