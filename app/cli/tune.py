"""`kb tune`: calibrate reranker scores on labelled queries, recommend the threshold for a target precision or
recall, sweep K for quality against latency, and (with --write) make the choices the defaults: saved in the shared
database (`app.services.saved_settings`), where every API and app, on any machine, follows them within
`models_reload_s` and every later command reads them; `--forget` removes them.

Exit codes: 0 done; 2 a user error (bad option, bad labels, no reranker, a target no threshold reaches with
--write).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from .common import err, fail, guard, load_embedder, operator, out, quiet_libraries, settings_for, warn

DEFAULT_KS = "10,20,50,100"


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)


def tune(
    dataset: Annotated[Path, typer.Argument(help="labelled set: a sample set (docs/, queries.jsonl) or a BEIR "
                                                 "folder")] = Path("data/samples"),
    target_precision: Annotated[Optional[float], typer.Option(
        "--target-precision", help="precision of what is shown, e.g. 0.9 for customer-facing answers "
        "[default: 0.9 unless --target-recall]")] = None,
    target_recall: Annotated[Optional[float], typer.Option(
        "--target-recall", help="share of the relevant recalled passages that must be shown")] = None,
    method: Annotated[str, typer.Option("--method", help="calibration: platt (few labels) | isotonic")] = "platt",
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="K to write [default: the smallest K of the "
                                                  "sweep within 0.01 of the best hit@N]")] = None,
    top_n: Annotated[Optional[int], typer.Option("--top-n", help="N shown [default: settings top_n]")] = None,
    k_values: Annotated[str, typer.Option("--k-values", help="K values to sweep (the largest is collected)")]
    = DEFAULT_KS,
    latency_queries: Annotated[int, typer.Option("--latency-queries", help="queries timed per K (0: skip)")] = 20,
    split: Annotated[str, typer.Option("--split", help="BEIR qrels split")] = "test",
    mode: Annotated[Optional[str], typer.Option("--mode", help="hybrid | dense | lexical")] = None,
    calibration_out: Annotated[Optional[Path], typer.Option(
        "--calibration-out", help="also save the fitted calibrator to this file, for review or for the "
        "`calibration` setting (what serves after --write is the copy in the shared database)")] = None,
    write: Annotated[bool, typer.Option("--write", help="save top_k, top_n, threshold and the calibrator in the "
                                                        "shared database: every API, app and command uses them "
                                                        "(a KB_* variable still wins)")] = False,
    forget: Annotated[bool, typer.Option("--forget", help="remove what --write saved (the config file's values "
                                                          "serve again) and exit")] = False,
    index: Annotated[Optional[Path], typer.Option("--index", help="main index folder; the eval index lives "
                                                  "beside it in ../eval")] = None,
    embedder: Annotated[Optional[str], typer.Option("--embedder", help="hub name or local folder")] = None,
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="hub name or local folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    judgments: Annotated[Optional[Path], typer.Option(
        "--judgments", help="fit on people's judgments (`kb feedback export`) over the current index instead of "
        "a labelled set (no K sweep: judgments carry no recall order)")] = None,
) -> None:
    """Calibrate reranker scores, recommend the threshold for a target precision or recall, sweep K."""
    from rich.progress import Progress

    from rerank.calibration import METHODS
    from rerank.params import check_top_n
    from retrieval.types import check_top_k

    from ..components import audit_log, control, make_search
    from ..quality import tune as t
    from ..quality.evaluate import detect_layout
    from ..services import saved_settings
    from ..settings import set_by_environment
    from .evaluate import open_eval_set

    quiet_libraries()
    s = settings_for(index, embedder, reranker)
    if forget:
        with guard():
            store = control(s)
            removed = saved_settings.forget(store, operator().who)
        if removed:
            audit_log(s).record(operator(), "forget saved defaults and calibration", store=store.where)
        typer.echo(f"removed the saved top_k, top_n, threshold and calibrator from {store.where}" if removed else
                   f"nothing saved in {store.where}")
        return
    if target_precision is not None and target_recall is not None:
        fail("give --target-precision or --target-recall, not both")
    if target_precision is None and target_recall is None:
        target_precision = 0.9
    top_n = s.top_n if top_n is None else top_n
    with guard():
        if method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
        for name, v in (("--target-precision", target_precision), ("--target-recall", target_recall)):
            if v is not None and not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]; got {v}")
        check_top_n(top_n)
        if top_k is not None:
            check_top_k(top_k)
        ks = t.parse_ks(k_values)
        if judgments is None:
            detect_layout(dataset, split)

    emb = load_embedder(s)
    sweep, timing = [], {}
    if judgments is not None:
        from ..components import build_search
        from ..quality.judgments import collect_judgments, load_judgments

        with guard():
            judged = load_judgments(judgments)
            service = build_search(s, emb)
        if service.reranker is None:
            fail(f"tuning needs reranker scores, and no reranker is loaded ({service.reranker_error or 'none'})")
        collected, missing = collect_judgments(service.reranker, service.index, judged, str(judgments))
        if missing:
            warn(f"{missing} judged chunks are no longer in the index and are left out")
        name, n_queries, n_unanswerable, unit = str(judgments), len(judged), \
            sum(not q.answerable and q.none_answers for q in judged), "judgment"
    else:
        labelled = open_eval_set(s, dataset, emb, split, progress=not as_json)
        service = make_search(s, emb, labelled.index)  # the loaded embedder, over the labelled set's index
        name, n_queries, n_unanswerable, unit = labelled.name, len(labelled.queries), \
            len(labelled.unanswerable), labelled.unit
    with Progress(console=err, disable=as_json, transient=True) as bar:
        task = bar.add_task("scoring", total=n_queries)
        if judgments is None:
            with guard():
                collected = t.collect(service, labelled, max(ks), mode,
                                      tick=lambda n, total: bar.update(task, completed=n))
        raw, grades, _ = collected.pairs()
        info = {"reranker": collected.reranker, "embedder": collected.embedder,
                "dataset": str(judgments if judgments is not None else dataset), "top_k": collected.top_k}
        with guard():
            calibrator = t.fit_calibrator(method, raw, grades, info)
        bar.update(task, description="cross-validating")
        cv = t.cross_validate(collected, method, target_precision, target_recall)
        if judgments is None:
            sweep = t.sweep_k(collected, ks, top_n)
            if latency_queries > 0:
                bar.update(task, description="timing K")
                timing = t.time_k(service, labelled, ks, latency_queries, mode)

    # Search compares the threshold with calibrated scores once `calibration` is set, so it is chosen on them.
    served = calibrator.apply(raw)
    rec = t.recommend_threshold(served, grades, target_precision, target_recall)
    current = service.calibrator.apply if service.calibrator is not None else t.sigmoid  # as search serves now
    effect_now = t.answer_effect(collected, current, s.threshold, top_n)
    # Floor to 4 decimals: rounding up could hide the passage the threshold was chosen at.
    threshold = None if rec is None else math.floor(rec.threshold * 1e4) / 1e4
    effect_rec = None if threshold is None else t.answer_effect(collected, calibrator.apply, threshold, top_n)
    chosen_k = top_k if top_k is not None else t.choose_k(sweep) if sweep else s.top_k
    # Thresholds that show 90%, 80%, … 10% of the passages: informative whatever the range of the scores.
    deciles = sorted({float(v) for v in np.round(np.quantile(served, np.linspace(0.1, 0.9, 9)), 4)})
    grid = t.threshold_curve(served, grades, thresholds=deciles)
    report = {
        "dataset": name, "queries": n_queries, "unanswerable": n_unanswerable,
        "judged": f"{unit}s", "pairs": int(raw.size), "relevant_pairs": int((grades > 0).sum()),
        "embedder": collected.embedder, "reranker": collected.reranker, "collected_top_k": collected.top_k,
        "calibration": {**calibrator.to_dict(), "cross_validation": cv},
        "threshold_units": "calibrated",
        "target": {"precision": target_precision} if target_precision is not None else {"recall": target_recall},
        "recommendation": None if rec is None else {**t.to_jsonable(rec), "threshold": threshold},
        "answers": {"current": effect_now, "recommended": effect_rec},
        "curve": t.to_jsonable(grid),
        "k_sweep": [{**t.to_jsonable(p), **({"latency": timing[p.k]} if p.k in timing else {})} for p in sweep],
        "chosen": {"top_k": chosen_k, "top_n": top_n, "threshold": threshold}, "written": None,
        "warning": None if calibrator.informative else "the reranker's scores carry no information about "
        "relevance on these labels (the calibrated score is the same for every passage): check the model",
    }
    if write:
        if rec is None:
            fail(f"no threshold reaches the target on these labels (best precision "
                 f"{max(p.precision or 0 for p in t.threshold_curve(served, grades)):.3f}); nothing written: "
                 "lower --target-precision, or use a better reranker")
        # The values and the calibrator are saved together, in one write: the threshold is in the calibrator's
        # units, so a process never serves one without the other.
        values = {"top_k": chosen_k, "top_n": top_n, "threshold": threshold}
        with guard():
            store = control(s)
            saved = saved_settings.save(store, values, operator().who, calibrator,
                                        source={"dataset": info["dataset"], "reranker": collected.reranker})
        if calibration_out is not None:
            calibrator.save(calibration_out)
        shadowed = [f"KB_{k.upper()}" for k in (*values, "calibration") if set_by_environment(k)]
        if shadowed:
            warn(f"{', '.join(shadowed)} set in the environment win over what was saved; unset them to serve it")
        audit_log(s).record(operator(), "write defaults and calibration", store=store.where, version=saved.version,
                            values=values)
        report["written"] = {"store": store.where, "version": saved.version, "values": values,
                             "calibrator_file": str(calibration_out) if calibration_out is not None else None}
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    _print_report(report, out)


def _print_report(r: dict, out) -> None:
    from rich.table import Table

    cal, cv = r["calibration"], r["calibration"]["cross_validation"]
    out.print(f"{r['dataset']}: {r['queries']} queries ({r['unanswerable']} unanswerable), {r['pairs']} scored "
              f"passages ({r['relevant_pairs']} relevant, judged as {r['judged']}) from the top "
              f"{r['collected_top_k']}; reranker {r['reranker']}", highlight=False)
    if r["warning"]:
        out.print(f"[yellow]warning:[/] {r['warning']}", highlight=False)
    params = ", ".join(f"{k}={v:.4g}" for k, v in cal["params"].items()) if cal["method"] == "platt" else \
        f"{len(cal['params']['x'])} breakpoints"
    out.print(f"calibration {cal['method']} ({params}); {cv['folds']}-fold by query: Brier {cv['brier_sigmoid']} "
              f"→ {cv['brier_calibrated']}, calibration error {cv['ece_sigmoid']} → {cv['ece_calibrated']} "
              "(sigmoid → calibrated)", highlight=False)
    table = Table(title="threshold on the calibrated score (at the deciles of the scores)")
    for col in ("threshold", "precision", "recall", "shown"):
        table.add_column(col, justify="right")
    for p in r["curve"]:
        table.add_row(f"{p['threshold']:.4g}", "-" if p["precision"] is None else f"{p['precision']:.3f}",
                      f"{p['recall']:.3f}", f"{p['shown_fraction']:.1%}")
    out.print(table)
    rec, now, new = r["recommendation"], r["answers"]["current"], r["answers"]["recommended"]
    target = ", ".join(f"{k} {v}" for k, v in r["target"].items())
    if rec is None:
        out.print(f"[bold red]no threshold reaches the target ({target}) on these labels[/]")
    else:
        out.print(f"target {target}: threshold [bold]{rec['threshold']}[/] gives precision {rec['precision']:.3f} "
                  f"(95% lower bound {rec['precision_low']:.3f}), recall {rec['recall']:.3f}, shows "
                  f"{rec['shown_fraction']:.1%} of recalled passages; held out: precision "
                  f"{cv['heldout_precision']}, recall {cv['heldout_recall']}", highlight=False)
    for name, e in (("now", now), ("recommended", new)):
        if e is None:
            continue
        out.print(f"{name} (threshold {e['threshold']}, N={e['top_n']}): {e['unanswerable_shown']}/"
                  f"{e['unanswerable']} unanswerable queries show an answer; {e['answerable_empty']}/"
                  f"{e['answerable']} answerable show nothing; {e['answerable_hit']} show a relevant passage",
                  highlight=False)
    ks = Table(title="K: quality after reranking the top K, and latency")
    for col in ("K", "recall@K", f"hit@{r['chosen']['top_n']}", "nDCG@10", "search p50 ms", "rerank p50 ms"):
        ks.add_column(col, justify="right")
    for p in r["k_sweep"]:
        lat = p.get("latency") or {}
        ks.add_row(str(p["k"]), f"{p['recall']:.4f}", f"{p['hit']:.4f}", f"{p['ndcg']:.4f}",
                   str(lat.get("p50_ms", "-")), str(lat.get("rerank_p50_ms", "-")))
    if r["k_sweep"]:
        out.print(ks)
    c = r["chosen"]
    out.print(f"chosen: top_k={c['top_k']}, top_n={c['top_n']}, threshold={c['threshold']}", highlight=False)
    if r["written"]:
        w = r["written"]
        out.print(f"saved with the calibrator in {w['store']} (version {w['version']}): every API and app serves "
                  "them within its models_reload_s, every command uses them; `kb tune --forget` removes them"
                  + (f"; calibrator also saved to {w['calibrator_file']}" if w["calibrator_file"] else ""),
                  highlight=False)
    else:
        out.print("run again with --write to make these the defaults", highlight=False)
