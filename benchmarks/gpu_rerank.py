"""GPU reranking figures for a model of bge-reranker-v2-m3's exact architecture: FP32 against FP16.

The model is XLMRobertaForSequenceClassification with the real model's config.json values (hidden 1024, 24 layers,
16 heads, intermediate 4096, vocabulary 250002, 8194 positions, one label; ~568M parameters) and random weights,
which time exactly like the trained ones. It is saved to a temporary folder and loaded through this project's
engine (`CrossEncoderReranker`, torch backend, the same path as `kb search`), once per dtype. Reported per dtype:

- first request: the first `score()` of 50 pairs right after `load()` (CUDA kernels and cuBLAS handles warm up);
- latency of 50 pairs of exactly 512 tokens (p50 / p95 over `--repeats`), and pairs/s;
- peak GPU memory during those requests (`torch.cuda.max_memory_allocated`);
- FP16 against FP32: speed-up, max |Δ logit| and whether the top-10 order is the same;
- cross-request batching in FP16: requests/s and p95 at 1, 4 and 16 concurrent callers (20 passages of 256
  tokens each), through `BatchingReranker` and without it.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_rerank.py --json

Without CUDA it says so and exits 0 (nothing to measure). Needs about 2.3 GB of disk while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rerank.types import RerankerOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# BAAI/bge-reranker-v2-m3 config.json (architecture fields; dropout is off at inference anyway)
V2_M3_CONFIG = dict(architectures=["XLMRobertaForSequenceClassification"], model_type="xlm-roberta",
                    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                    max_position_embeddings=8194, type_vocab_size=1, vocab_size=250002, layer_norm_eps=1e-5,
                    initializer_range=0.02, position_embedding_type="absolute", pad_token_id=1, bos_token_id=0,
                    eos_token_id=2, num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})


def build(dest: Path, seed: int = 0) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from tests.tiny_models import build_tiny_cross_encoder

    build_tiny_cross_encoder(dest, arch="xlmr", seed=seed, max_position=8192)  # the real tokenizer class
    torch.manual_seed(seed)
    XLMRobertaForSequenceClassification(XLMRobertaConfig(**V2_M3_CONFIG)).eval().save_pretrained(dest)
    return dest


def pairs_of(tokenizer, n: int, tokens: int) -> tuple[str, list[str]]:
    """A query and n passages whose pair is exactly `tokens` long (special tokens included)."""
    from tests.tiny_models import training_corpus

    query = "How many days of annual leave do new employees get, and how do they apply?"
    lines = training_corpus(4000, seed=11)
    passages, k = [], 0
    for _ in range(n):
        words: list[str] = []
        while len(tokenizer(query, " ".join(words))["input_ids"]) < tokens:
            words += lines[k % len(lines)].split()
            k += 1
        while len(tokenizer(query, " ".join(words))["input_ids"]) > tokens:
            words.pop()
        while len(tokenizer(query, " ".join(words + ["a"]))["input_ids"]) <= tokens:  # top up one token at a time
            words.append("a")
        passages.append(" ".join(words))
    return query, passages


def measure(path: Path, dtype: str, n: int, tokens: int, repeats: int, batch_size: int) -> dict:
    import torch

    from rerank.engines.cross_encoder import CrossEncoderReranker

    torch.cuda.empty_cache()
    t0 = time.perf_counter()
    options = RerankerOptions(device="cuda", dtype=dtype, batch_size=batch_size, max_length=tokens)
    engine = CrossEncoderReranker(str(path), options).load()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    query, passages = pairs_of(engine.tokenizer, n, tokens)
    lengths = {len(engine.tokenizer(query, p)["input_ids"]) for p in passages}
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    engine.score(query, passages)
    torch.cuda.synchronize()
    first_ms = (time.perf_counter() - t0) * 1000
    times, raw = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        raw = [r for r, _ in engine.score(query, passages)]
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    out = {"dtype": dtype, "load_s": round(load_s, 2), "first_request_ms": round(first_ms, 1),
           "latency_ms": {"p50": round(statistics.median(times), 1),
                          "p95": round(times[int(0.95 * (len(times) - 1))], 1), "min": round(times[0], 1)},
           "pairs_per_s": round(n / (statistics.median(times) / 1000), 1),
           "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "pair_tokens": sorted(lengths), "effective_batch_size": engine.info().effective_batch_size,
           "raw": raw}
    del engine
    return out


def measure_batching(path: Path, levels: Sequence[int], requests_per_client: int, pairs: int, tokens: int,
                     batch_size: int, device: str = "cuda") -> dict:
    """FP16 requests of `pairs` passages, `levels` concurrent callers each sending `requests_per_client`, scored by
    the engine alone and through `BatchingReranker` (cross-request batching, the API's default), alternating:
    requests/s, p50/p95 latency, and requests per batching round."""
    import torch

    from rerank.coalesce import BatchingReranker
    from rerank.engines.cross_encoder import CrossEncoderReranker

    dtype = "float16" if device.startswith("cuda") else "float32"
    engine = CrossEncoderReranker(str(path), RerankerOptions(device=device, dtype=dtype, batch_size=batch_size,
                                                             max_length=tokens)).load()
    query, passages = pairs_of(engine.tokenizer, pairs, tokens)
    engine.score(query, passages)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    out: dict = {"pairs_per_request": pairs, "tokens": tokens, "requests_per_client": requests_per_client}

    def run(scorer, clients: int) -> dict:
        latencies: list[float] = []
        lock = threading.Lock()

        def client() -> None:
            for _ in range(requests_per_client):
                t0 = time.perf_counter()
                scorer.score(query, passages)
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        latencies.sort()
        return {"requests_per_s": round(len(latencies) / wall, 2), "p50_ms": round(statistics.median(latencies), 1),
                "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1)}

    for clients in levels:
        batcher = BatchingReranker(engine)
        off, on = run(engine, clients), run(batcher, clients)
        stats = batcher.stats()
        batcher.close()
        out[str(clients)] = {"off": off, "on": on,
                             "throughput_on_vs_off": round(on["requests_per_s"] / off["requests_per_s"], 2),
                             "p95_on_vs_off": round(on["p95_ms"] / off["p95_ms"], 2),
                             "requests_per_round": round(stats.requests / max(1, stats.rounds), 2)}
    del engine
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clients", default="1,4,16", help="concurrent callers for the batching figures")
    parser.add_argument("--batching-pairs", type=int, default=20, help="passages per request in the batching figures")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        message = "no CUDA GPU here: nothing to measure (run this on a machine with an NVIDIA GPU)"
        print(json.dumps({"gpu": None, "message": message}) if args.json else message)
        return 0
    from app.quality.bench import machine
    from rerank.validation.agreement import top_k_order

    report = {"model": "XLMRobertaForSequenceClassification, bge-reranker-v2-m3 config, random weights",
              "pairs": args.pairs, "tokens": args.tokens, "repeats": args.repeats, "batch_size": args.batch_size,
              "machine": machine(), "gpu": torch.cuda.get_device_name(0)}
    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp) / "v2_m3_shape")
        for dtype in ("float32", "float16"):
            report[dtype] = measure(path, dtype, args.pairs, args.tokens, args.repeats, args.batch_size)
        report["batching"] = measure_batching(path, [int(c) for c in args.clients.split(",")], 8,
                                              args.batching_pairs, 256, args.batch_size)
        from transformers import AutoConfig, XLMRobertaForSequenceClassification

        with torch.device("meta"):
            meta = XLMRobertaForSequenceClassification(AutoConfig.from_pretrained(path))
        report["parameters"] = sum(p.numel() for p in meta.parameters())
    fp32, fp16 = report["float32"].pop("raw"), report["float16"].pop("raw")
    report["fp16_vs_fp32"] = {
        "speedup": round(report["float32"]["latency_ms"]["p50"] / report["float16"]["latency_ms"]["p50"], 2),
        "max_abs_raw_diff": float(f"{max(abs(a - b) for a, b in zip(fp32, fp16)):.3g}"),
        "top10_identical": top_k_order(fp32, 10) == top_k_order(fp16, 10)}
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
