"""Topic-aware row order for training (TAS-Balanced): every batch drawn from one query cluster.

``--batch-order clusters --batch-size B`` writes the rows in blocks of ``B``, each block one batch for a trainer
that reads rows in order. A cluster's rows fill its own blocks; within a block no two rows share an anchor or a
positive text (with in-batch negatives such a pair would be a false negative: a row's positive is the other
row's negative). Rows a cluster cannot place in full blocks of its own go into mixed blocks at the end of the
assignment, under the same rule. Full blocks are shuffled with the seed; the one block shorter than ``B``, if
any, comes last (a trainer dropping the last incomplete batch drops just it).

:func:`in_order` is the batch sampler that keeps this order in sentence-transformers' trainer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import InputError

ORDERS = ("pool", "clusters")
ORDERED_FORMATS = ("triplet", "n-tuple")  # one (anchor, positive) per row: what an in-batch-negatives loss reads


def check_order(order: str, size: int, fmt: str, has_clusters: bool) -> None:
    """Raise a one-line InputError unless ``--batch-order order`` can be written for this output."""
    if order not in ORDERS:
        raise InputError(f"--batch-order {order}: choose one of {', '.join(ORDERS)}")
    if size < 1:
        raise InputError(f"--batch-size {size}: must be at least 1")
    if order == "pool":
        return
    if fmt not in ORDERED_FORMATS:
        raise InputError(f"--batch-order clusters writes {' or '.join(ORDERED_FORMATS)} rows, not --format {fmt}")
    if not has_clusters:
        raise InputError("--batch-order clusters needs query clusters in the pool: mine with --query-clusters K")


def in_batches(rows: Iterator[dict[str, Any]], size: int, seed: int) -> Iterator[dict[str, Any]]:
    """Output rows (with ``cluster_id``, ``anchor`` and ``positive``) in :func:`cluster_order`."""
    rows = list(rows)
    order = cluster_order([r["cluster_id"] for r in rows], [(r["anchor"], r["positive"]) for r in rows], size, seed)
    return (rows[i] for i in order)


def _place(rows: list[int], keys: list[tuple[str, str]], size: int) -> list[list[int]]:
    """Blocks of the rows: each row in the first block with room and none of its texts, a block opened when
    none fits; rows whose texts recur most go first, so they spread over the blocks before the others fill them."""
    blocks: list[list[int]] = []
    taken: list[set[str]] = []
    counts = Counter(t for r in rows for t in set(keys[r]))
    for r in sorted(rows, key=lambda r: -max(counts[t] for t in keys[r])):
        anchor, positive = keys[r]
        for block, texts in zip(blocks, taken):
            if len(block) < size and anchor not in texts and positive not in texts:
                break
        else:
            block, texts = [], set()
            blocks.append(block)
            taken.append(texts)
        block.append(r)
        texts.update((anchor, positive))
    return blocks


def _deal(rows: list[int], keys: list[tuple[str, str]], size: int) -> list[list[int]] | None:
    """Rows dealt in turn over ceil(n / size) blocks (all full but the last), the rows of one anchor one after
    another so they land in different blocks; None if a block still gets a text twice."""
    counts = Counter(keys[r][0] for r in rows)
    rows = sorted(rows, key=lambda r: (-counts[keys[r][0]], keys[r][0]))
    n = len(rows)
    room = [size] * (n // size) + ([n % size] if n % size else [])
    blocks: list[list[int]] = [[] for _ in room]
    turn = 0
    for r in rows:
        while len(blocks[turn]) == room[turn]:
            turn = (turn + 1) % len(blocks)
        blocks[turn].append(r)
        turn = (turn + 1) % len(blocks)
    for block in blocks:
        texts = [t for r in block for t in keys[r]]
        if len(texts) != len(set(texts)):
            return None
    return blocks


def cluster_order(clusters: list[Any], keys: list[tuple[str, str]], size: int, seed: int = 0) -> list[int]:
    """The row order: ``clusters[i]`` is row ``i``'s cluster, ``keys[i]`` its (anchor, positive) texts."""
    by_cluster: dict[Any, list[int]] = {}
    for i, c in enumerate(clusters):
        by_cluster.setdefault(c, []).append(i)
    full: list[list[int]] = []
    leftover: list[int] = []
    for c in sorted(by_cluster, key=lambda c: (c is None, c)):
        blocks = _place(by_cluster[c], keys, size)
        full += [b for b in blocks if len(b) == size]
        leftover += [r for b in blocks if len(b) < size for r in b]
    mixed = _place(leftover, keys, size)
    if sum(len(b) < size for b in mixed) > 1:
        mixed = _deal(leftover, keys, size) or mixed
    full += [b for b in mixed if len(b) == size]
    short = [b for b in mixed if len(b) < size]
    rng = np.random.default_rng(seed)
    blocks = [full[i] for i in rng.permutation(len(full))]
    if len(short) > 1:  # rows no block could take without a repeated text: one per block would waste batches
        raise InputError(f"--batch-order clusters: {sum(map(len, short))} rows cannot be placed in batches of "
                         f"{size} without repeating an anchor or positive text in a batch; lower --batch-size")
    return [r for b in blocks + short for r in b]


def in_order(dataset: Any, batch_size: int, drop_last: bool, **_: Any):
    """A batch sampler for ``SentenceTransformerTrainingArguments(batch_sampler=in_order)``: batches of
    consecutive rows, in the order the file has them (for ``--batch-order clusters`` output)."""
    from torch.utils.data import BatchSampler, SequentialSampler

    return BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last)
