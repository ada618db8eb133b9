"""`kb bench rerank` on a model of bge-reranker-v2-m3's exact size (XLMRobertaForSequenceClassification: hidden 1024,
24 layers, 16 heads, intermediate 4096, vocabulary 250002, 8194 positions, one label; random weights), built in a
temporary folder (about 2.3 GB, plus its ONNX export and int8 copy) and deleted afterwards.

    HF_HUB_OFFLINE=1 python benchmarks/rerank_cpu.py --json > /tmp/rerank_cpu.json

Candidates are real chunks of data/samples/docs cut to fit 512 tokens with the query; the naive baseline
(`CrossEncoder(path).predict(pairs)`, default settings) and the engine variants run interleaved in the same process.
`auto` (the engine's CPU default) exports the model to ONNX and times it against PyTorch on its first load (in the
temporary folder, so every run pays it: `load_s`). `defaults` is the engine as a CPU install builds it with no setting
(`app.quality.bench` variant `defaults`: backend auto, dtype auto, exact top-10), which may serve bfloat16 + exact
re-scoring where the CPU has AMX/AVX512-BF16 and the load measured it faster. `--reranker DIR` benchmarks a model
folder (e.g. the trained proxy of `benchmarks/train_proxy_reranker.py`) instead of the random one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

M3_SHAPE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                vocab_size=250002, max_position_embeddings=8194, type_vocab_size=1, num_labels=1)


def build_m3_sized(dest: Path, seed: int = 0, **overrides) -> Path:
    """Random weights in bge-reranker-v2-m3's shape (or `overrides`, e.g. fewer layers for a quick run), with a
    real XLM-RoBERTa tokenizer class (the tests' small SentencePiece vocabulary: token ids stay below its size)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from tests.tiny_models import build_tiny_cross_encoder

    build_tiny_cross_encoder(dest, arch="xlmr", seed=seed, max_position=8192)
    config = XLMRobertaConfig(**{**M3_SHAPE, **overrides}, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    config.architectures = ["XLMRobertaForSequenceClassification"]
    torch.manual_seed(seed)
    XLMRobertaForSequenceClassification(config).eval().save_pretrained(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--k", default="10,50")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default="naive,flagembedding,defaults,auto,torch,torch-bf16+exact-forced,"
                        "torch-bf16+exact,onnx", help="before/after of issue 31: torch (the old CPU default), auto "
                        "(float32: the faster of torch and ONNX Runtime) and defaults (no setting given: auto, which "
                        "may pick bfloat16 + exact); torch-bf16+exact-forced (re-scoring whatever it costs, as "
                        "before) and torch-bf16+exact (float32 directly where re-scoring would redo too many)")
    parser.add_argument("--reranker", type=Path, default=None,
                        help="a model folder to benchmark instead of the random-weight one (copied to a temporary "
                        "folder, so its ONNX export is made and timed afresh)")
    parser.add_argument("--layers", type=int, default=24, help="fewer for a quick trial (the figure needs 24)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the engine variants' batch [the engine's default: 8 on a CPU] (naive: its default, 32)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "samples" / "docs")
    args = parser.parse_args()

    from app.quality.bench import bench_rerank
    from rerank.types import RerankerOptions

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if args.reranker is not None:
            import shutil

            path = Path(shutil.copytree(args.reranker, Path(tmp) / args.reranker.name,
                                        ignore=shutil.ignore_patterns("kb-onnx")))
        else:
            path = build_m3_sized(Path(tmp) / "m3_sized", num_hidden_layers=args.layers)
        build_s = time.perf_counter() - t0
        report = bench_rerank(str(path), [args.corpus], [int(k) for k in args.k.split(",")], args.repeats,
                              args.variants.split(","),
                              options=RerankerOptions(batch_size=args.batch_size, models_dir=str(Path(tmp) / "models")),
                              progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    report["model"] = str(args.reranker) if args.reranker is not None else \
        f"XLMRobertaForSequenceClassification, bge-reranker-v2-m3 shape ({args.layers} layers), random weights"
    report["build_model_s"] = round(build_s, 1)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
