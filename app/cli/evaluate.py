"""`kb eval DATASET`: nDCG@10, MRR@10, recall@10/50/100 and hit@N of recall (and recall + rerank), with latency
and the answers shown for unanswerable questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import (
    EmbedderOpt,
    IndexOpt,
    JsonOpt,
    RerankerOpt,
    err,
    fail,
    guard,
    load_embedder,
    out,
    quiet_libraries,
    settings_for,
    warn,
)


def open_eval_set(s, dataset: Path, emb, split: str, progress: bool):
    """The labelled set at `dataset` with its cached eval index, kept beside the main index (INDEX/../eval);
    `kb eval` and `kb tune` share it. Errors end the command with the reason."""
    from ..components import eval_opener, eval_root, ingest_options
    from ..quality.evaluate import open_dataset

    with guard():
        return open_dataset(dataset, emb, eval_root(s), ingest_options(s), split, progress=progress,
                            opener=eval_opener(s))


def eval_(
    dataset: Annotated[Optional[Path], typer.Argument(
        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or a sample set (docs/ and queries.jsonl, "
             "e.g. data/samples)")] = None,
    judgments: Annotated[Optional[Path], typer.Option(
        "--judgments", help="people's judgments (`kb feedback export`): score the current index on them")] = None,
    split: Annotated[str, typer.Option("--split", help="BEIR qrels split")] = "test",
    index: IndexOpt = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="hybrid | dense | lexical | all")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="chunks recalled (and reranked) per query")] = 100,
    top_n: Annotated[Optional[int], typer.Option("--top-n", help="N of hit@N (also hit@1, hit@3) [default: "
                                                 "settings top_n]")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="score a reranked result needs to be "
                                                       "shown [default: settings threshold]")] = None,
    embedder: EmbedderOpt = None,
    reranker: RerankerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """nDCG@10, MRR@10, recall@10/50/100 and hit@N of recall (and recall + rerank), with latency and the answers
    shown for unanswerable questions. The eval index lives beside the main one (INDEX/../eval) and is reused."""
    from rerank.params import check_threshold, check_top_n  # cheap: the arguments are checked before heavy imports
    from retrieval.types import check_top_k

    s = settings_for(index, embedder, reranker)
    top_n = s.top_n if top_n is None else top_n
    threshold = s.threshold if threshold is None else threshold
    if (dataset is None) == (judgments is None):
        fail("give a DATASET folder or --judgments FILE (one of them)")
    if dataset is not None and not dataset.is_dir():
        fail(f"{dataset}: {'not a folder' if dataset.exists() else 'no such folder'}; give a BEIR folder "
             f"(corpus.jsonl, queries.jsonl, qrels/{split}.tsv) or a sample set (docs/ and queries.jsonl, e.g. "
             "data/samples)")
    if judgments is not None and not judgments.is_file():
        fail(f"--judgments {judgments}: no such file; write one with `kb feedback export FILE`")
    with guard():
        check_top_k(top_k)
        check_top_n(top_n)
        check_threshold(threshold)
    # only now the heavy imports (FAISS, SciPy, and torch with the models)
    from rich.progress import Progress

    from rerank.calibration import load_calibrator

    from ..components import load_reranker, load_vocab
    from ..quality.evaluate import detect_layout, evaluate_set

    quiet_libraries()
    if judgments is not None:
        return _eval_judgments(s, judgments, min(top_k, 100), threshold, top_n, as_json)
    with guard():
        layout = detect_layout(dataset, split)
        calibrator = load_calibrator(s.calibration) if s.calibration is not None else None
    emb = load_embedder(s)
    model, reranker_error = load_reranker(s)
    if reranker_error:
        warn(reranker_error)
    calibrate = calibrator.apply if calibrator is not None and model is not None else None
    fitted_for = calibrator.info.get("reranker") if calibrator is not None else None
    if calibrate is not None and fitted_for not in (None, model.name):
        warn(f"calibration {s.calibration} was fitted for reranker {fitted_for!r}, not {model.name!r}: its scores "
             "mean little here; run `kb tune` again")
    es = open_eval_set(s, dataset, emb, split, progress=not as_json)
    for file, reason in es.skipped:
        err.print(f"[yellow]skipped[/] {file}: {reason} (its labels cannot be judged)", highlight=False,
                  soft_wrap=True)
    modes = ["dense", "lexical", "hybrid"] if mode == "all" else [mode or s.recall_mode]
    synonyms = load_vocab(s).synonyms
    hit_ns = sorted({1, 3, top_n})
    report: dict = {"dataset": es.name, "layout": layout, "split": split if layout == "beir" else None,
                    "judged": f"{es.unit}s", "queries": len(es.queries),
                    "unanswerable": len(es.unanswerable), "documents": es.documents, "chunks": len(es.index.chunks),
                    "skipped": [{"file": f, "reason": r} for f, r in es.skipped], "embedder": emb.name,
                    "reranker": model.name if model else None,
                    "calibration": str(s.calibration) if calibrate else None, "top_k": top_k, "top_n": top_n,
                    "threshold": threshold, "metrics": {}, "by_language": {}, "answers": {}, "latency_ms": {}}
    with Progress(console=err, disable=as_json, transient=True) as bar:
        for m in modes:
            task = bar.add_task(f"{m}", total=len(es.queries))
            with guard():
                res = evaluate_set(es, emb, m, top_k, model, top_k, hit_ns, threshold, calibrate,
                                   s.dense_weight, s.lexical_weight, s.rrf_k,
                                   tick=lambda n, total, t=task: bar.update(t, completed=n), synonyms=synonyms)
            for stage, r in res.items():
                prefix = m if stage == "recall" else f"{m}+rerank"
                report["metrics"].update({f"{prefix}/{k}": v for k, v in r["metrics"].items()})
                for lang, part in r["by_language"].items():
                    report["by_language"].setdefault(lang, {"queries": part["queries"], "metrics": {}})
                    report["by_language"][lang]["metrics"].update(
                        {f"{prefix}/{k}": v for k, v in part["metrics"].items()})
                report["latency_ms"][prefix] = r["latency_ms"]
                report["answers"][prefix] = r["answers"]
    if len(modes) == 1 and not model:  # flat names for the common case
        report["metrics"] = {k.split("/", 1)[1]: v for k, v in report["metrics"].items()}
        for part in report["by_language"].values():
            part["metrics"] = {k.split("/", 1)[1]: v for k, v in part["metrics"].items()}
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    _print_report(report, es)


def _eval_judgments(s, path: Path, top_k: int, threshold: float, top_n: int, as_json: bool) -> None:
    """`kb eval --judgments FILE`: the current index and reranker on people's judgments."""
    from ..components import build_search
    from ..quality.judgments import evaluate_judgments, load_judgments

    with guard():
        judged = load_judgments(path)
    emb = load_embedder(s)
    with guard():
        service = build_search(s, emb)
        report = evaluate_judgments(service, judged, top_k, threshold, top_n)
    report = {"judgments": str(path), "index": str(s.index_dir), "embedder": emb.name,
              "reranker": service.reranker.name if service.reranker else None, "top_k": top_k, **report}
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    m, a = report["metrics"], report["answers"]
    out.print(f"{path}: {report['queries']} judged queries ({report['answerable']} with a useful result); "
              + ", ".join(f"{k} {'-' if v is None else f'{v:.4f}'}" for k, v in m.items()), highlight=False)
    out.print(f"shown when score ≥ {a['threshold']} (N={a['top_n']}): {a['answerable_empty']}/{a['answerable']} "
              f"answerable queries would show nothing; {a['unanswerable_shown']}/{a['unanswerable']} that people "
              "said nothing answers would still show an answer", highlight=False)


def _print_report(report: dict, es) -> None:
    stages = list(report["latency_ms"])
    table = Table(title=f"{es.name}: {len(es.queries)} queries ({len(es.unanswerable)} unanswerable), "
                        f"{es.documents} documents, {len(es.index.chunks)} chunks; judged as {es.unit}s")
    table.add_column("metric")
    for st in stages:
        table.add_column(st, justify="right")
    names = dict.fromkeys(k.split("/", 1)[-1] for k in report["metrics"])
    for name in names:
        row = [report["metrics"].get(f"{st}/{name}", report["metrics"].get(name)) for st in stages]
        table.add_row(name, *("-" if v is None else f"{v:.4f}" for v in row))
    table.add_row("latency p50 / p95 ms", *(f"{report['latency_ms'][st]['p50']:.1f} / "
                                           f"{report['latency_ms'][st]['p95']:.1f}" for st in stages))
    out.print(table)
    if len(report["by_language"]) > 1:
        by_lang = Table(title="per language (answerable queries)")
        by_lang.add_column("language")
        by_lang.add_column("queries", justify="right")
        wanted = [n for n in names if n.startswith(("hit@", "mrr@"))]
        columns = [(st, n) for st in stages for n in wanted]
        for st, n in columns:
            by_lang.add_column(f"{st} {n}", justify="right")
        for lang, part in report["by_language"].items():
            values = [part["metrics"].get(f"{st}/{n}", part["metrics"].get(n)) for st, n in columns]
            by_lang.add_row(lang, str(part["queries"]), *("-" if v is None else f"{v:.3f}" for v in values))
        out.print(by_lang)
    for st in stages:
        a = report["answers"][st]
        rule = "recall shows its top N whatever the scores" if a["threshold"] is None else \
            f"shown when score ≥ {a['threshold']}"
        out.print(f"{st} ({rule}): {a['unanswerable_shown']}/{a['unanswerable']} unanswerable queries would show "
                  f"an answer; {a['answerable_empty']}/{a['answerable']} answerable queries would show nothing",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
