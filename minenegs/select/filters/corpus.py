"""What filters may look up about documents: their vectors and their normalised texts."""

from __future__ import annotations

import numpy as np


def normalise_many(texts):
    """Case, accents, punctuation and spacing folded away, for a pyarrow string array (vectorised):
    NFKD, combining marks removed, lower case, every run of non-letters/digits made one space, trimmed."""
    import pyarrow.compute as pc

    out = pc.utf8_normalize(texts, "NFKD")
    out = pc.replace_substring_regex(out, r"\p{Mn}+", "")
    out = pc.utf8_lower(out)
    out = pc.replace_substring_regex(out, r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_trim_whitespace(out)


class CorpusView:
    """Corpus vectors (read a block at a time: :class:`~minenegs.encode.embeddings.VectorFile`) and texts (a pyarrow
    string column)."""

    def __init__(self, vectors: np.ndarray, texts) -> None:
        """``texts`` is the column, or a function that reads it when a filter first needs it."""
        self.vectors = vectors
        self._texts = texts
        self._keys: np.ndarray | None = None

    @property
    def texts(self):
        if callable(self._texts):
            self._texts = self._texts()
        return self._texts

    def text(self, row: int) -> str:
        return self.texts[row].as_py()

    def prepare_keys(self, rows: np.ndarray) -> None:
        """Give each of ``rows`` an integer key, equal for documents with the same normalised text."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = np.unique(np.asarray(rows, dtype=np.int64))
        keys = np.full(len(self.texts), -1, dtype=np.int64)
        if len(rows):
            encoded = pc.dictionary_encode(normalise_many(self.texts.take(pa.array(rows))))
            keys[rows] = encoded.combine_chunks().indices.to_numpy() if hasattr(encoded, "combine_chunks") \
                else encoded.indices.to_numpy()
        self._keys = keys

    def text_keys(self, rows: np.ndarray) -> np.ndarray:
        if self._keys is None:
            self.prepare_keys(rows)
        return self._keys[np.asarray(rows, dtype=np.int64)]
