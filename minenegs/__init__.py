"""minenegs: mine hard negatives for training retrieval and embedding models.

The pipeline, one module per stage: :mod:`~minenegs.dataset` (inputs) ->
:mod:`~minenegs.embeddings` (encode, cached by :mod:`~minenegs.cache`) -> later stages.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``minenegs.mine_hard_negatives``, imported on first use so ``import minenegs`` stays light."""
    if name == "mine_hard_negatives":
        from .compat import mine_hard_negatives

        return mine_hard_negatives
    raise AttributeError(f"module 'minenegs' has no attribute {name!r}")
