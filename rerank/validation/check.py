"""`kb models check PATH [--golden FILE]`: validate a cross-encoder folder before it serves.

Checks, in order (a failed check names the file and the fix; checks that depend on it are skipped):
folder → config.json → architecture (*ForSequenceClassification) → num_labels == 1 → tokenizer files → tokenizer
loads → weights file (safetensors or bin) → tensors match the config (strict: names and shapes) → smoke score is
finite (loaded through the same path as serving: `CrossEncoderReranker`).

`--golden FILE` (JSONL of {"query", "passage", "label"}) then compares the new model with the current one:
pairwise order agreement with the labels for each, Kendall tau between the two models' scores per query, rank
changes, and mean/max score shift. A drop in agreement beyond `tolerance` is a regression.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rerank.errors import RerankerParameterError, RerankError
from rerank.kinds import architecture, num_labels, read_config
from rerank.types import RerankerOptions
from rerank.validation.metrics import mean_kendall_by_group, pairwise_agreement, ranks_within
from rerank.validation.weights import (
    WeightsError,
    compare_shapes,
    expected_tensor_shapes,
    file_tensor_shapes,
    find_weight_files,
)

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
                   "vocab.json")
SMOKE_QUERY = "How many days of annual leave do employees get?"
SMOKE_PASSAGE = "Employees are entitled to 20 days of paid annual leave per year. 员工每年享有带薪年假。"
SAVE_FIX = "save the model with model.save_pretrained(PATH) and tokenizer.save_pretrained(PATH)"


@dataclass(frozen=True)
class CheckItem:
    name: str
    status: str  # "ok" | "fail" | "skipped"
    message: str
    file: str | None = None
    fix: str | None = None


@dataclass(frozen=True)
class GoldenPair:
    query: str
    passage: str
    label: float


@dataclass
class GoldenReport:
    file: str
    n_pairs: int
    n_queries: int
    candidate_agreement: float | None
    current: str | None
    current_agreement: float | None = None
    current_error: str | None = None
    kendall_tau: float | None = None
    rank_changes: int | None = None
    mean_score_shift: float | None = None
    max_score_shift: float | None = None
    tolerance: float = 0.02
    verdict: str = "no-baseline"  # "pass" | "regression" | "no-baseline"


@dataclass
class CheckReport:
    path: str
    items: list[CheckItem] = field(default_factory=list)
    smoke_score: float | None = None
    golden: GoldenReport | None = None
    scorer: Any = field(default=None, repr=False, compare=False)  # the model the smoke score loaded, for a caller
    # that scores with it next (the promotion gate); not part of the report's dict

    @property
    def ok(self) -> bool:
        return (all(i.status == "ok" for i in self.items)
                and (self.golden is None or self.golden.verdict != "regression"))

    @property
    def failures(self) -> list[CheckItem]:
        return [i for i in self.items if i.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "checks": [asdict(i) for i in self.items],
                "smoke_score": self.smoke_score, "golden": asdict(self.golden) if self.golden else None}


def load_golden(file: str | Path) -> list[GoldenPair]:
    """Read a JSONL file of {"query", "passage", "label"} (label: number, higher = more relevant)."""
    path = Path(file)
    if not path.is_file():
        raise RerankerParameterError("golden", str(file), "an existing JSONL file",
                                     'write one {"query": ..., "passage": ..., "label": 0|1} object per line')
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            pair = GoldenPair(str(obj["query"]), str(obj["passage"]), float(obj["label"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RerankerParameterError("golden", f"{path}:{n}", 'a JSON object with "query", "passage" and a '
                                         'numeric "label" on every line', f"fix line {n} ({exc})") from exc
        pairs.append(pair)
    if not pairs:
        raise RerankerParameterError("golden", str(file), "at least one labelled pair", "add pairs to the file")
    return pairs


def _fail(report: CheckReport, name: str, message: str, file: str | None, fix: str) -> None:
    report.items.append(CheckItem(name, "fail", message, file, fix))


def _ok(report: CheckReport, name: str, message: str, file: str | None = None) -> None:
    report.items.append(CheckItem(name, "ok", message, file))


def _skip(report: CheckReport, names: list[str], why: str) -> None:
    report.items.extend(CheckItem(n, "skipped", f"skipped: {why}") for n in names)


def check_model(path: str | Path, *, golden: str | Path | None = None, current: str | None = None,
                options: RerankerOptions | None = None) -> CheckReport:
    """Validate the cross-encoder folder `path` (loaded with `options`, default: on the CPU); with `golden`, compare
    it with `current` on labelled pairs."""
    options = options if options is not None else RerankerOptions(device="cpu")
    allow_remote_code = options.allow_remote_code
    folder = Path(path).expanduser()
    report = CheckReport(str(folder))
    if not folder.is_dir():
        _fail(report, "folder", f"{folder} is not a folder", str(folder),
              "pass the folder that holds config.json and the weights (see `kb models list`)")
        return report
    _ok(report, "folder", f"{folder} exists")

    config_ok = _check_config(report, folder)
    tokenizer_ok = _check_tokenizer(report, folder, allow_remote_code)
    weights_ok = _check_weights(report, folder, config_ok, allow_remote_code)
    if config_ok and tokenizer_ok and weights_ok:
        _smoke(report, folder, options)
    else:
        _skip(report, ["smoke_score"], "an earlier check failed")
    if golden is not None and report.ok:
        report.golden = compare_on_golden(folder, golden, current, options)
    return report


def _check_config(report: CheckReport, folder: Path) -> bool:
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        _fail(report, "config", f"config.json is missing in {folder}", str(cfg_file),
              "copy config.json from the base model you fine-tuned, or " + SAVE_FIX)
        _skip(report, ["architecture", "num_labels"], "no config.json")
        return False
    config = read_config(folder)
    if config is None:
        _fail(report, "config", "config.json is not valid JSON", str(cfg_file), "restore config.json; " + SAVE_FIX)
        _skip(report, ["architecture", "num_labels"], "config.json unreadable")
        return False
    _ok(report, "config", f"config.json: model_type={config.get('model_type')!r}", str(cfg_file))
    arch = architecture(config)
    ok = True
    if arch is None or not arch.endswith("ForSequenceClassification"):
        _fail(report, "architecture", f"architecture is {arch!r}, not a *ForSequenceClassification cross-encoder",
              str(cfg_file), "a reranker folder holds a sequence-classification model (e.g. "
              "XLMRobertaForSequenceClassification); fine-tune with sentence_transformers.CrossEncoder(num_labels=1)"
              "; LLM rerankers (gemma, minicpm) are not validated here")
        ok = False
    else:
        _ok(report, "architecture", arch, str(cfg_file))
    labels = num_labels(config)
    if labels != 1:
        _fail(report, "num_labels", f"num_labels is {labels}; a reranker outputs one relevance logit",
              str(cfg_file), "train the cross-encoder with num_labels=1 (a 2-label classifier is not a reranker)")
        ok = False
    else:
        _ok(report, "num_labels", "one label (one relevance logit)", str(cfg_file))
    return ok


def _check_tokenizer(report: CheckReport, folder: Path, allow_remote_code: bool) -> bool:
    present = [n for n in TOKENIZER_FILES if (folder / n).is_file()]
    if not present:
        _fail(report, "tokenizer_files", f"no tokenizer file in {folder} (looked for {', '.join(TOKENIZER_FILES)})",
              str(folder / "tokenizer.json"), "copy the tokenizer files of the base model into the folder, or run "
              "tokenizer.save_pretrained(PATH)")
        _skip(report, ["tokenizer_load"], "no tokenizer files")
        return False
    _ok(report, "tokenizer_files", ", ".join(present), str(folder / present[0]))
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=allow_remote_code)
        tok("query", "passage")
    except Exception as exc:
        _fail(report, "tokenizer_load", f"the tokenizer does not load ({exc.__class__.__name__}: {str(exc)[:160]})",
              str(folder / present[0]), "restore tokenizer.json / tokenizer_config.json from the base model")
        return False
    _ok(report, "tokenizer_load", f"{type(tok).__name__}, vocabulary {len(tok)}")
    return True


def _check_weights(report: CheckReport, folder: Path, config_ok: bool, allow_remote_code: bool) -> bool:
    try:
        files = find_weight_files(folder)
    except WeightsError as exc:
        _fail(report, "weights_file", str(exc), str(folder / exc.file), "copy every weight file again")
        _skip(report, ["weights_match"], "weight files incomplete")
        return False
    if not files:
        _fail(report, "weights_file", f"no model.safetensors or pytorch_model.bin in {folder}",
              str(folder / "model.safetensors"), "copy the weights file into the folder, or " + SAVE_FIX)
        _skip(report, ["weights_match"], "no weights file")
        return False
    _ok(report, "weights_file", ", ".join(f.name for f in files), str(files[0]))
    if not config_ok:
        _skip(report, ["weights_match"], "config.json is not a one-label cross-encoder config")
        return False
    try:
        found = file_tensor_shapes(files)
    except WeightsError as exc:
        _fail(report, "weights_match", str(exc), str(folder / exc.file), "copy the file again or re-export it")
        return False
    try:
        from transformers import AutoConfig

        expected = expected_tensor_shapes(AutoConfig.from_pretrained(str(folder),
                                                                     trust_remote_code=allow_remote_code))
    except Exception as exc:
        _fail(report, "weights_match", f"config.json cannot build a model ({exc.__class__.__name__}: "
              f"{str(exc)[:160]})", str(folder / "config.json"), "restore config.json from the base model")
        return False
    mismatch = compare_shapes(found, expected)
    if not mismatch.ok:
        _fail(report, "weights_match", f"{files[0].name} does not match config.json: {mismatch.describe()}",
              str(files[0]), "the weights and config.json come from different models: copy the config.json saved "
              "with these weights (or these weights' config), or " + SAVE_FIX)
        return False
    _ok(report, "weights_match", f"{len(found)} tensors match config.json", str(files[0]))
    return True


def _smoke(report: CheckReport, folder: Path, options: RerankerOptions) -> None:
    from rerank.engines.cross_encoder import CrossEncoderReranker

    try:
        reranker = CrossEncoderReranker(str(folder), options).load()
        raw, score = reranker.score(SMOKE_QUERY, [SMOKE_PASSAGE])[0]
    except (RerankError, ValueError, RuntimeError) as exc:
        _fail(report, "smoke_score", f"scoring a sample pair failed: {exc}", str(folder),
              "fix the failures above, or re-export the model with " + SAVE_FIX)
        return
    if not math.isfinite(raw):
        _fail(report, "smoke_score", f"the sample pair scored {raw} (not finite)", str(folder),
              "the weights hold NaN/inf values: re-export them from a good checkpoint")
        return
    report.smoke_score = raw
    report.scorer = reranker
    _ok(report, "smoke_score", f"raw {raw:.4f}, score {score:.4f} on {reranker.device}/{reranker.dtype}")


def score_grouped(reranker, pairs: list[GoldenPair]) -> list[float]:
    """Raw scores of `pairs` in their order, each query's passages scored in one call."""
    raws = [0.0] * len(pairs)
    by_query: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_query.setdefault(p.query, []).append(i)
    for query, idx in by_query.items():
        for i, (raw, _) in zip(idx, reranker.score(query, [pairs[i].passage for i in idx]), strict=True):
            raws[i] = raw
    return raws


def compare_on_golden(path: str | Path, golden: str | Path, current: str | None,
                      options: RerankerOptions | None = None, tolerance: float = 0.02) -> GoldenReport:
    """Score the golden pairs with the model at `path` and with `current` (the serving model), both loaded with
    `options` (default: on the CPU), and compare."""
    from rerank.engines.cross_encoder import CrossEncoderReranker

    options = options if options is not None else RerankerOptions(device="cpu")
    pairs = load_golden(golden)
    new = score_grouped(CrossEncoderReranker(str(path), options).load(), pairs)
    if current is None or current.strip().lower() == "none":
        return golden_report(str(golden), pairs, new, None, current, tolerance,
                             "no current reranker configured; nothing to compare against")
    try:
        old = score_grouped(CrossEncoderReranker(current, options).load(), pairs)
    except (RerankError, ValueError, RuntimeError) as exc:
        return golden_report(str(golden), pairs, new, None, current, tolerance,
                             f"current reranker {current!r} could not be loaded: {exc}")
    return golden_report(str(golden), pairs, new, old, current, tolerance)


def golden_report(file: str, pairs: list[GoldenPair], new: list[float], old: list[float] | None,
                  current: str | None, tolerance: float = 0.02, current_error: str | None = None) -> GoldenReport:
    """Compare the raw scores `new` (the candidate) and `old` (the serving model; None when it could not score)
    on the labelled `pairs`: agreement with the labels for each, and a regression verdict when the candidate's
    agreement is more than `tolerance` below the serving model's."""
    from rerank.types import sigmoid

    groups = [p.query for p in pairs]
    labels = [p.label for p in pairs]
    report = GoldenReport(file, len(pairs), len(set(groups)), pairwise_agreement(groups, labels, new), current,
                          tolerance=tolerance, current_error=current_error)
    if old is None:
        return report
    report.current_agreement = pairwise_agreement(groups, labels, old)
    report.kendall_tau = mean_kendall_by_group(groups, new, old)
    report.rank_changes = sum(a != b for a, b in zip(ranks_within(groups, new), ranks_within(groups, old),
                                                     strict=True))
    shifts = [abs(sigmoid(a) - sigmoid(b)) for a, b in zip(new, old, strict=True)]
    report.mean_score_shift = sum(shifts) / len(shifts)
    report.max_score_shift = max(shifts)
    if report.candidate_agreement is None or report.current_agreement is None:
        report.verdict = "no-baseline"
    elif report.candidate_agreement < report.current_agreement - tolerance:
        report.verdict = "regression"
    else:
        report.verdict = "pass"
    return report
