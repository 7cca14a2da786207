"""The labels judge, ``labels:PATH``: verdicts read from a file of labelled pairs (a labelling round's answers,
another system's verdicts, hidden qrels turned into texts), so judging can be replayed or checked without a model.

``PATH`` is JSON Lines, one pair a line: ``{"query": TEXT, "candidate": TEXT, "verdict": V}``, ``V`` one of
``relevant``, ``not_relevant``, ``unsure``, or a number (above 0: relevant, 0: not relevant, as qrels grade). A
pair the file does not hold gets no verdict (the candidate is not handed out). The fingerprint is the file's
SHA-256: another file is another judge in the verdict cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ...errors import InputError
from ...artifacts import file_digest
from .base import NOT_RELEVANT, RELEVANT, VERDICTS, Ask, JudgeKind


class LabelsJudge:
    def __init__(self, path: Path | str, given: str = "") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"--judge {given or 'labels:' + str(path)}: no such file {self.path}")
        self.labels: dict[tuple[str, str], str] = {}
        with open(self.path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    key, verdict = (entry["query"], entry["candidate"]), _verdict(entry["verdict"])
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"{self.path}:{n}: give {{\"query\", \"candidate\", \"verdict\"}} with a verdict "
                                     f"of {', '.join(VERDICTS)} or a grade") from None
                self.labels[key] = verdict
        self._digest = file_digest(self.path).hexdigest()

    name = "labels"

    def fingerprint(self) -> str:
        return "labels-" + self._digest[:24]

    def verdicts(self, asks: list[Ask], done: Callable[[int, str | None], None]) -> list[str | None]:
        out = [self.labels.get((a.query, a.candidate)) for a in asks]
        for i, verdict in enumerate(out):
            done(i, verdict)
        return out


def _verdict(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(value)
    if isinstance(value, str):
        if value not in VERDICTS:
            raise ValueError(value)
        return value
    return RELEVANT if value > 0 else NOT_RELEVANT


KIND = JudgeKind("labels", "labels:PATH", lambda rest, options, given: LabelsJudge(rest, given))
