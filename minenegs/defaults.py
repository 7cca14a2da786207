"""The default recipe of `minenegs mine`, `filter` and `sweep`, chosen by the fine-tuning benchmark
(``benchmarks/finetune.py``, table and reasons in ``benchmarks/RESULTS.md``) and spelled out in
``configs/default.toml``: the top-ranked candidates, no positive-aware margin, duplicates of a positive dropped
(normalised text always, embeddings at cosine >= ``DUP_THRESHOLD``), and candidates at embedding cosine >=
``MAX_POSITIVE_SIMILARITY`` to a positive dropped too (all three off with ``--keep-duplicates``).
:class:`minenegs.mine.MineParams` takes the strategy and count from here; its filters are the ones it is given."""

STRATEGY = "top"
NUM_NEGATIVES = 5
DUP_THRESHOLD = 0.95
MAX_POSITIVE_SIMILARITY = 0.7
