"""minenegs: mine hard negatives for training retrieval and embedding models.

The library's main calls are importable from here (each on first use, so ``import minenegs`` stays light):
``load_dataset``/``load_beir`` (inputs), ``encode_dataset`` and ``Embeddings`` (the embeddings folder),
``build_pool`` and ``PoolParams`` (the candidate pool), ``MineParams`` and ``negatives_from_pool`` (selection and
output), and ``mine_hard_negatives`` (the drop-in for sentence-transformers' function).
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "inputs.dataset", "load_beir": "inputs.dataset",
    "encode_dataset": "encode.embeddings", "Embeddings": "encode.folder", "bundled_model_path": "encode.models",
    "build_pool": "retrieve.pool", "PoolParams": "retrieve.pool",
    "MineParams": "select.engine", "negatives_from_pool": "api",
    "mine_hard_negatives": "compat",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'minenegs' has no attribute {name!r}")
