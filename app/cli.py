"""`kb`: the one entry point (typer). Every command reads defaults from settings and overrides per call.

Exit codes: 0 success; 2 user error (bad argument, missing index or model, index locked); 3 ingest finished but
some files were skipped; 1 an unexpected failure (a bug: please report it with the traceback).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .settings import get_settings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Enterprise knowledge-base search: ingest documents, search them, rerank, evaluate, serve.")
out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="index folder [default: settings index_dir]")]
EmbedderOpt = Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")]
RerankerOpt = Annotated[Optional[str], typer.Option("--reranker", help="hub name, local folder, or 'none'")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _quiet_libraries() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("retrieval", "rerank", "app"):  # the CLI prints our warnings itself, once
        logging.getLogger(ours).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _load_embedder(name: str | None):
    """The embedder named on the command line or in settings, loaded; its fallback warning printed once."""
    from retrieval.embedder import Embedder
    from retrieval.models import ModelNotAvailable

    s = get_settings()
    try:
        emb = Embedder(name if name is not None else s.embedder, s.device, s.dtype, str(s.models_dir)).load()
    except (ModelNotAvailable, ValueError) as exc:
        fail(str(exc))
    if emb.warning:
        err.print(f"[yellow]warning:[/] {emb.warning}", highlight=False)
    return emb


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders to ingest")],
    index: IndexOpt = None,
    embedder: EmbedderOpt = None,
    no_delete: Annotated[bool, typer.Option("--no-delete", help="keep documents whose files disappeared")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="start a new index (e.g. for another embedder)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add, update and delete documents so that the index matches the given files and folders."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from retrieval.index import IndexMismatch
    from retrieval.storage import IndexLocked

    from .ingest_sync import sync

    _quiet_libraries()
    s = get_settings()
    index_dir = index if index is not None else s.index_dir
    emb = _load_embedder(embedder)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=as_json, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            report = sync(paths, Path(index_dir), emb, s.chunk_max_tokens, s.chunk_overlap,
                          int(s.max_file_mb * 2**20), s.ann_threshold, delete=not no_delete, rebuild=rebuild,
                          progress=progress, milvus=s.milvus_config())
        except (IndexLocked, IndexMismatch) as exc:
            fail(str(exc))
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for file, reason in report.skipped:
            err.print(f"[yellow]skipped[/] {file}: {reason}", highlight=False)
        out.print(f"{report.files_seen} files read: {len(report.added)} added, {len(report.updated)} updated, "
                  f"{report.unchanged} unchanged, {len(report.deleted)} deleted, {len(report.skipped)} skipped; "
                  f"{report.chunks_written} chunks embedded; index {index_dir} now holds {report.total_documents} "
                  f"documents, {report.total_chunks} chunks ({report.seconds:.1f} s)", highlight=False)
    raise typer.Exit(report.exit_code)


def _print_result(res, as_json: bool) -> None:
    if as_json:
        print(json.dumps(res.to_dict(), ensure_ascii=False))
        return
    for w in res.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    table = Table(title=f"{res.query}  ({res.timings_ms['total']:.0f} ms)", show_lines=True, expand=True)
    for col in ("rank", "score", "band", "raw", "retrieval"):
        table.add_column(col, no_wrap=True)
    table.add_column("source", ratio=1, overflow="fold")
    table.add_column("text", ratio=3, overflow="fold")
    for r in res.results:
        d = r.to_dict()
        where = " › ".join(x for x in (d["title"], d["section"]) if x) + (f" p.{d['page']}" if d["page"] else "")
        table.add_row(str(r.rank), "-" if r.score is None else f"{r.score:.4f}", r.band or "-",
                      "-" if r.raw_score is None else f"{r.raw_score:.3f}", f"{r.hit.retrieval_score:.4f}",
                      where, d["text"][:300])
    out.print(table)
    if res.below_threshold:
        out.print(f"{len(res.below_threshold)} more below the threshold {res.params['threshold']}")


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="the question")] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", help="file with one query per line")] = None,
    index: IndexOpt = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="recall size K")] = None,
    top_n: Annotated[Optional[int], typer.Option("--top-n", help="results shown N")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="minimum score 0..1")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="hybrid | dense | lexical")] = None,
    groups: Annotated[Optional[str], typer.Option("--groups", help="comma-separated access groups")] = None,
    max_per_doc: Annotated[Optional[int], typer.Option("--max-per-doc", help="at most M results per document")] = None,
    merge: Annotated[Optional[bool], typer.Option("--merge/--no-merge", help="join neighbouring chunks of a "
                                                  "document [default: settings merge_adjacent]")] = None,
    embedder: EmbedderOpt = None,
    reranker: RerankerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the index: recall K chunks, rerank them, show the N best above the threshold."""
    from retrieval.index import IndexMismatch, IndexNotFound
    from retrieval.models import ModelNotAvailable

    from .search import SearchService

    _quiet_libraries()
    if (query is None) == (queries is None):
        fail("give either a QUERY or --queries FILE")
    if queries is not None and not queries.is_file():
        fail(f"--queries {queries}: no such file")
    items = [query] if query is not None else [
        line.strip() for line in queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    group_list = [g.strip() for g in groups.split(",") if g.strip()] if groups is not None else None
    service = SearchService(get_settings(), index, embedder, reranker)
    try:
        service.load()
    except (ModelNotAvailable, IndexNotFound, IndexMismatch, ValueError) as exc:
        fail(str(exc))
    for q in items:
        try:
            res = service.search(q, top_k, top_n, threshold, group_list, mode, max_per_doc, merge)
        except ValueError as exc:
            fail(str(exc))
        _print_result(res, as_json)


def open_eval_set(dataset: Path, emb, index: Path | None, split: str, progress: bool):
    """The labelled set at `dataset` with its cached eval index, kept beside the main index (INDEX/../eval);
    `kb eval` and `kb tune` share it. Errors end the command with the reason."""
    from retrieval.storage import IndexLocked

    from .evaluate import open_dataset

    s = get_settings()
    root = (index if index is not None else s.index_dir).parent / "eval"
    try:
        return open_dataset(dataset, emb, root, s.chunk_max_tokens, s.chunk_overlap, split,
                            int(s.max_file_mb * 2**20), progress=progress)
    except (FileNotFoundError, ValueError, IndexLocked) as exc:
        fail(str(exc))


@app.command("eval")
def eval_(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or a "
                                                 "sample set (docs/ and queries.jsonl, e.g. data/samples)")],
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
    from rich.progress import Progress

    from .calibration import load_calibrator
    from .evaluate import detect_layout, evaluate_set
    from .search import SearchService

    _quiet_libraries()
    s = get_settings()
    top_n = s.top_n if top_n is None else top_n
    threshold = s.threshold if threshold is None else threshold
    if not 1 <= top_n <= 100 or not 0.0 <= threshold <= 1.0 or top_k < 1:
        fail(f"--top-k must be ≥ 1, --top-n within 1..100 and --threshold within 0..1; got {top_k}, {top_n}, "
             f"{threshold}")
    try:
        layout = detect_layout(dataset, split)
        calibrator = load_calibrator(s.calibration) if s.calibration is not None else None
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    emb = _load_embedder(embedder)
    service = SearchService(s, index, emb.name, reranker)
    service.load_reranker()
    if service.reranker_error:
        err.print(f"[yellow]warning:[/] {service.reranker_error}", highlight=False)
    calibrate = calibrator.apply if calibrator is not None and service.reranker else None
    fitted_for = calibrator.info.get("reranker") if calibrator is not None else None
    if calibrate is not None and fitted_for not in (None, service.reranker.name):
        err.print(f"[yellow]warning:[/] calibration {s.calibration} was fitted for reranker {fitted_for!r}, not "
                  f"{service.reranker.name!r}: its scores mean little here; run `kb tune` again", highlight=False)
    es = open_eval_set(dataset, emb, index, split, progress=not as_json)
    for file, reason in es.skipped:
        err.print(f"[yellow]skipped[/] {file}: {reason} (its labels cannot be judged)", highlight=False)
    modes = ["dense", "lexical", "hybrid"] if mode == "all" else [mode or s.recall_mode]
    hit_ns = sorted({1, 3, top_n})
    report: dict = {"dataset": es.name, "layout": layout, "split": split if layout == "beir" else None,
                    "judged": f"{es.unit}s", "queries": len(es.queries),
                    "unanswerable": len(es.unanswerable), "documents": es.documents, "chunks": len(es.index.chunks),
                    "skipped": [{"file": f, "reason": r} for f, r in es.skipped], "embedder": emb.name,
                    "reranker": service.reranker.name if service.reranker else None,
                    "calibration": str(s.calibration) if calibrate else None, "top_k": top_k, "top_n": top_n,
                    "threshold": threshold, "metrics": {}, "answers": {}, "latency_ms": {}}
    with Progress(console=err, disable=as_json, transient=True) as bar:
        for m in modes:
            task = bar.add_task(f"{m}", total=len(es.queries))
            try:
                res = evaluate_set(es, emb, m, top_k, service.reranker, top_k, hit_ns, threshold, calibrate,
                                   s.dense_weight, s.lexical_weight, s.rrf_k,
                                   tick=lambda n, total, t=task: bar.update(t, completed=n))
            except ValueError as exc:
                fail(str(exc))
            for stage, r in res.items():
                prefix = m if stage == "recall" else f"{m}+rerank"
                report["metrics"].update({f"{prefix}/{k}": v for k, v in r["metrics"].items()})
                report["latency_ms"][prefix] = r["latency_ms"]
                report["answers"][prefix] = r["answers"]
    if len(modes) == 1 and not service.reranker:  # flat names for the common case
        report["metrics"] = {k.split("/", 1)[1]: v for k, v in report["metrics"].items()}
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
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
    for st in stages:
        a = report["answers"][st]
        rule = "recall shows its top N whatever the scores" if a["threshold"] is None else \
            f"shown when score ≥ {a['threshold']}"
        out.print(f"{st} ({rule}): {a['unanswerable_shown']}/{a['unanswerable']} unanswerable queries would show "
                  f"an answer; {a['answerable_empty']}/{a['answerable']} answerable queries would show nothing",
                  highlight=False)


def _not_yet(name: str, issue: str):
    def command() -> None:
        fail(f"`kb {name}` is not implemented yet ({issue})")

    command.__doc__ = f"Not implemented yet ({issue})."
    return command


# Commands that live in their own modules (`app/cli_<name>.py`, each with `register(app)`) add themselves;
# a module that does not exist yet leaves clear stubs for its commands.
_OPTIONAL = (("cli_rerank", ("rerank",), "reranker issue"), ("cli_serve", ("serve",), "API issue"),
             ("cli_ui", ("ui", "demo"), "app issue"), ("cli_bench", ("bench",), "performance issue"),
             ("cli_tune", ("tune",), "calibration issue"))


def _register_optional() -> None:
    import importlib

    for module, names, issue in _OPTIONAL:
        try:
            register = importlib.import_module(f"app.{module}").register
        except ModuleNotFoundError as exc:
            if exc.name != f"app.{module}":
                raise
            for name in names:
                app.command(name)(_not_yet(name, issue))
        else:
            register(app)


_register_optional()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; the index keeps its last complete version")
        sys.exit(130)
