"""What filters may look up about documents: their vectors and their normalised texts."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import numpy as np

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: two texts equal under this are duplicates."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _PUNCT.sub(" ", text.casefold()).strip()


class CorpusView:
    """Corpus vectors (memory-mapped) and texts, with normalised-text keys computed on demand."""

    def __init__(self, vectors: np.ndarray, text_of: Callable[[int], str]) -> None:
        self.vectors = vectors
        self._text_of = text_of
        self._keys: dict[int, bytes] = {}

    def text(self, row: int) -> str:
        return self._text_of(row)

    def text_key(self, row: int) -> bytes:
        key = self._keys.get(row)
        if key is None:
            key = hashlib.blake2b(normalise(self._text_of(row)).encode(), digest_size=16).digest()
            self._keys[row] = key
        return key
