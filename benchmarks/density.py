"""What ``mine``'s density probe measures on four real sets, and what the adaptive default hands out beside the
fixed recipe's negatives.

Sets, each with the bundled model and a dense top-100 pool:

- ``scifact`` train, every label (about one relevant document per query: sparse);
- ``nfcorpus_train``: the fine-tuning benchmark's 800 training queries with ONE given positive each
  (``finetune.py``'s sample; about 43 relevant per query: dense);
- ``dbpedia_subset`` and ``msmarco_dl19_subset``: ``false_negatives.py``'s protocol (two highest-graded relevant
  documents visible, the rest hidden; dense).

Per set: the probe's figures (share of the fixed recipe's negatives at or above their query's lowest positive,
calibrate's hold-out leak where it can be had) and its verdict; where hidden labels exist, the hidden-relevant
share and mean exact rank of the fixed recipe's negatives beside the adaptive default's. Writes
``benchmarks/results/density.json``.

    python benchmarks/density.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _proc import write_results  # noqa: E402
from false_negatives import Judge, mined, prepare, two_visible  # noqa: E402
from finetune import relevant_pairs, train_embeddings, train_folder  # noqa: E402

from minenegs.encode.folder import Embeddings  # noqa: E402
from minenegs.inputs.dataset import load_beir  # noqa: E402
from minenegs.retrieve.pool import PoolParams, build_pool  # noqa: E402
from minenegs.select.adaptive import choose  # noqa: E402
from minenegs.select.candidates import corpus_view, read_pool_arrays  # noqa: E402
from minenegs.select.engine import Selector  # noqa: E402
from minenegs.select.params import MineParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def own_pool(data: Path) -> tuple[Selector, Judge | None]:
    """The pool of a training set as ``finetune.py`` mines it; a judge where hidden labels exist."""
    folder = train_folder(data)
    ds = load_beir(folder, "train")
    emb = Embeddings(train_embeddings(ds, data))
    arrays = read_pool_arrays(build_pool(emb, PoolParams(depth=100)))
    judge = None
    if (folder / "qrels" / "hidden.tsv").exists():
        given = {(r.query_id, r.doc_id) for r in ds.qrels}
        hidden = relevant_pairs(data) - given
        judge = Judge(emb, arrays, hidden)
    return Selector(arrays, corpus_view(emb)), judge


def one(name: str, engine: Selector, judge: Judge | None) -> dict:
    fixed = MineParams.default()
    chosen = choose(engine, fixed)
    entry = {"set": name, **chosen.to_dict()}
    if judge is not None:
        entry["fixed"] = mined(engine, judge, fixed)
        entry["adaptive"] = mined(engine, judge, chosen.params) if chosen.params.num_negatives else None
    print(json.dumps(entry), flush=True)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "density.json")
    args = parser.parse_args()
    sets = []
    for name in ("scifact", "nfcorpus_train"):
        sets.append(one(name, *own_pool(args.shared / name)))
    for name in ("dbpedia_subset", "msmarco_dl19_subset"):
        ds, hidden = two_visible(load_beir(args.shared / name, "test"))
        sets.append(one(name, *prepare(ds, hidden, name)))
    write_results(args.output, {"sets": sets})


if __name__ == "__main__":
    main()
