"""How long 50 (query, ~300-token passage) pairs take on this CPU in float32 for a model of bge-reranker-v2-m3's
exact size (XLMRobertaForSequenceClassification: hidden 1024, 24 layers, 16 heads, intermediate 4096, vocabulary
250002, 8194 positions, one label; random weights), through `CrossEncoderReranker` and through a naive
`CrossEncoder(path).predict(pairs)`.

    HF_HUB_OFFLINE=1 python benchmarks/rerank_cpu.py --json

The model is built in a temporary folder and deleted afterwards (about 2.3 GB on disk while it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

M3_SHAPE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                vocab_size=250002, max_position_embeddings=8194, type_vocab_size=1, num_labels=1)


def build_m3_sized(dest: Path, seed: int = 0) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from tests.tiny_models import build_tiny_cross_encoder

    build_tiny_cross_encoder(dest, arch="xlmr", seed=seed, max_position=8192)  # real XLM-R tokenizer class
    config = XLMRobertaConfig(**M3_SHAPE, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    config.architectures = ["XLMRobertaForSequenceClassification"]
    torch.manual_seed(seed)
    XLMRobertaForSequenceClassification(config).eval().save_pretrained(dest)
    return dest


def make_pairs(tokenizer, n: int = 50, target_tokens: int = 300) -> list[tuple[str, str]]:
    from tests.tiny_models import training_corpus

    lines = training_corpus(2000, seed=7)
    query = "How many days of annual leave do new employees get, and how do they apply?"
    pairs, k = [], 0
    for _ in range(n):
        passage = ""
        while len(tokenizer(passage, add_special_tokens=False)["input_ids"]) < target_tokens:
            passage += lines[k % len(lines)] + " "
            k += 1
        pairs.append((query, passage.strip()))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    from rerank.engine import CrossEncoderReranker

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_m3_sized(Path(tmp) / "m3_sized")
        build_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        engine = CrossEncoderReranker(str(path), device="cpu", dtype="float32", batch_size=args.batch_size,
                                      max_length=512).load()
        engine_load_s = time.perf_counter() - t0
        pairs = make_pairs(engine.tokenizer, args.pairs)
        lengths = [len(engine.tokenizer(q, p)["input_ids"]) for q, p in pairs]
        query, texts = pairs[0][0], [p for _, p in pairs]
        engine_s = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            engine.score(query, texts)
            engine_s.append(time.perf_counter() - t0)
        n_params = sum(p.numel() for p in engine.cross_encoder.model.parameters())
        del engine

        t0 = time.perf_counter()
        naive = CrossEncoder(str(path), device="cpu")
        naive_load_s = time.perf_counter() - t0
        naive_s = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            naive.predict(pairs, batch_size=args.batch_size, show_progress_bar=False)
            naive_s.append(time.perf_counter() - t0)

    result = {
        "model": "XLMRobertaForSequenceClassification, bge-reranker-v2-m3 shape, random weights",
        "parameters": n_params, "pairs": len(pairs), "pair_tokens_mean": round(statistics.fmean(lengths), 1),
        "pair_tokens_max": max(lengths), "batch_size": args.batch_size, "dtype": "float32",
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "build_model_s": round(build_s, 1), "engine_load_s": round(engine_load_s, 2),
        "naive_load_s": round(naive_load_s, 2),
        "engine_score_s": [round(x, 2) for x in engine_s], "naive_predict_s": [round(x, 2) for x in naive_s],
        "engine_ms_per_pair": round(min(engine_s) / len(pairs) * 1000, 1),
        "naive_ms_per_pair": round(min(naive_s) / len(pairs) * 1000, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
