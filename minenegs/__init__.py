"""minenegs: mine hard negatives for training retrieval and embedding models.

The pipeline, one module per stage: :mod:`~minenegs.dataset` (inputs) ->
:mod:`~minenegs.embeddings` (encode, cached by :mod:`~minenegs.cache`) -> later stages.
"""

__version__ = "0.1.0"
