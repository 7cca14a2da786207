"""How many of the handed-out negatives are secretly relevant, read from what the judges flagged (with judging).

While mining, the judges (the whole chain, as :meth:`.judging.Judging.decide` answers) saw ``n`` candidates,
flagged ``F`` of them and cleared the ``C`` handed out. With the chain's sensitivity ``s`` (it flags a relevant
document), miss rate ``m`` (it clears one) and false-alarm rate ``f`` (it flags one that is not relevant), the
relevant documents among those seen number ``R = (F - f n) / (s - f)`` (Rogan and Gladen's correction of an
imperfect test), ``m R`` of them were cleared, and the share of the handed-out negatives that is relevant is
``m R / C``.

- ``s`` and ``m``: from labelled positives held out and shown to the judges as candidates, the query's other
  positives as reference (``calibrate``'s miss rate).
- ``f``: from documents drawn at random from the corpus outside the query's pool, shown the same way. Not from
  the pool's deep ranks: on densely judged data those are still often relevant (read as false alarms, they would
  push ``f`` up and the estimate down). A judge raises fewer false alarms on a far document than on a hard
  candidate, so ``f`` read this way is low if anything, and the estimate high: it errs toward a warning.
- The 95 % interval: a percentile bootstrap, each of the three samples (mining, held-out positives, far
  documents) resampled by query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .judges.base import NOT_RELEVANT, RELEVANT

DRAWS = 2000  # bootstrap draws
BUCKETS = 4096  # queries are summed into at most this many buckets before resampling
MAX_PROBES = 200  # held-out positives and far documents asked about, each (a seeded sample)


@dataclass(frozen=True)
class Flags:
    """Per query of a judged selection: candidates the judges were asked about, flagged, cleared and handed out."""

    asked: np.ndarray
    flagged: np.ndarray
    cleared: np.ndarray

    @classmethod
    def merge(cls, parts: list["Flags"]) -> "Flags":
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) if parts else np.zeros(0, np.int64)
                     for k in ("asked", "flagged", "cleared")))

    def table(self) -> np.ndarray:
        return np.stack([self.asked, self.flagged, self.cleared], axis=1).astype(np.float64)


@dataclass(frozen=True)
class Probes:
    """The chain's verdicts on held-out positives and on far documents, with the query (segment) of each."""

    known: list[str | None]
    known_query: np.ndarray
    far: list[str | None]
    far_query: np.ndarray

    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Per query: (answered, flagged, cleared) of its held-out positives; (answered, flagged) of its far
        documents. Unanswered probes are left out."""
        return (_per_query(self.known, self.known_query, (RELEVANT, NOT_RELEVANT)),
                _per_query(self.far, self.far_query, (RELEVANT,)))


def _per_query(verdicts: list[str | None], query: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    said = np.asarray(verdicts, dtype=object)
    answered = np.asarray([v is not None for v in said], dtype=bool)
    _, group = np.unique(np.asarray(query, dtype=np.int64)[answered], return_inverse=True)
    cols = [np.ones(int(answered.sum()))] + [(said[answered] == k).astype(np.float64) for k in kinds]
    k = int(group.max()) + 1 if len(group) else 0
    return np.stack([np.bincount(group, weights=c, minlength=k) for c in cols], axis=1)


def far_documents(pool_docs: list[np.ndarray], n_docs: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` (query segment, corpus row) pairs, spread evenly over the queries (a seeded order decides
    who gets one more), each row drawn at random outside that query's pool rows (``pool_docs[segment]``), no row
    twice for a query."""
    rng = np.random.default_rng(seed)
    order = [s for s in rng.permutation(len(pool_docs)) if len(np.unique(pool_docs[s])) < n_docs]
    quota = np.bincount(np.resize(np.asarray(order, dtype=np.int64), count if order else 0), minlength=len(pool_docs))
    segments, docs = [], []
    for s in np.flatnonzero(quota):
        taken = np.unique(pool_docs[s])
        k = min(int(quota[s]), n_docs - len(taken))
        if k <= 0:
            continue
        if n_docs - len(taken) <= 8 * k:  # few rows outside the pool: draw from them all
            drawn = rng.choice(np.setdiff1d(np.arange(n_docs), taken), size=k, replace=False)
        else:
            seen, drawn = set(taken.tolist()), []
            while len(drawn) < k:
                if (d := int(rng.integers(n_docs))) not in seen:
                    seen.add(d)
                    drawn.append(d)
        segments += [s] * k
        docs += list(drawn)
    return np.asarray(segments, dtype=np.int64), np.asarray(docs, dtype=np.int64)


def share(sums: np.ndarray, known: np.ndarray, far: np.ndarray) -> np.ndarray:
    """The relevant share of the handed-out negatives from summed counts (a row each, or one row): ``sums``
    (asked, flagged, cleared), ``known`` (answered, flagged, cleared), ``far`` (answered, flagged). Where the
    judges tell relevant from not no better than chance (``s <= f``), 1: nothing can be read from the flags."""
    n, flagged, cleared = sums[..., 0], sums[..., 1], sums[..., 2]
    s = known[..., 1] / np.maximum(known[..., 0], 1)
    m = known[..., 2] / np.maximum(known[..., 0], 1)
    f = far[..., 1] / np.maximum(far[..., 0], 1)
    gap = s - f
    with np.errstate(divide="ignore", invalid="ignore"):
        relevant = np.clip((flagged - f * n) / gap, 0, n)
        out = np.clip(m * relevant / cleared, 0, 1)
    return np.where((gap > 0) & (cleared > 0), out, np.where(cleared > 0, 1.0, 0.0))


def estimate(flags: Flags, probes: Probes, draws: int = DRAWS, seed: int = 0) -> dict:
    """The share of handed-out negatives that is relevant, with its 95 % interval and what it was read from; no
    ``rate`` (and a ``why``) where a sample is empty."""
    mining, (known, far) = flags.table(), probes.tables()
    counts = {"asked": int(mining[:, 0].sum()), "flagged": int(mining[:, 1].sum()),
              "handed_out": int(mining[:, 2].sum()), "known_positives": int(known[:, 0].sum()),
              "far_documents": int(far[:, 0].sum())}
    why = ("no negative was handed out" if not counts["handed_out"] else
           "no query has two positives to hold one out: the judges' miss rate is unknown"
           if not counts["known_positives"] else "no far document was judged" if not counts["far_documents"]
           else None)
    if why:
        return {"rate": None, "why": why, **counts}
    whole = [t.sum(axis=0) for t in (mining, known, far)]
    rng = np.random.default_rng(seed)
    boot = share(*(_resample(t, draws, rng) for t in (mining, known, far)))
    s, m = whole[1][1] / whole[1][0], whole[1][2] / whole[1][0]
    return {"rate": round(float(share(*whole)), 4), "low": round(float(np.quantile(boot, 0.025)), 4),
            "high": round(float(np.quantile(boot, 0.975)), 4), "sensitivity": round(float(s), 4),
            "miss_rate": round(float(m), 4), "false_alarm": round(float(whole[2][1] / whole[2][0]), 4), **counts}


def _resample(table: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` sums of ``table``'s rows (queries) drawn with replacement; more rows than ``BUCKETS`` are first
    summed into that many random buckets."""
    if len(table) > BUCKETS:
        bucket = rng.integers(BUCKETS, size=len(table))
        table = np.stack([np.bincount(bucket, weights=c, minlength=BUCKETS) for c in table.T], axis=1)
    k = len(table)
    out = np.empty((draws, table.shape[1]))
    for lo in range(0, draws, 250):
        weights = rng.multinomial(k, np.full(k, 1 / k), size=min(250, draws - lo))
        out[lo:lo + len(weights)] = weights @ table
    return out
