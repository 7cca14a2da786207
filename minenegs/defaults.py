"""The default recipe of `minenegs mine`, `filter` and `sweep` and of :class:`minenegs.mine.MineParams`, chosen by
the fine-tuning benchmark (``benchmarks/finetune.py``, table and reasons in ``benchmarks/RESULTS.md``) and
spelled out in ``configs/default.toml``: the top-ranked candidates, no positive-aware margin."""

STRATEGY = "top"
NUM_NEGATIVES = 5
