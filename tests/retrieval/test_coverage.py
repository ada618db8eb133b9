"""Whether a model can read a query is judged from its tokenizer, whatever the model is called: unknown tokens,
raw byte pieces and characters split into byte fragments all count as letters it cannot read."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from retrieval.coverage import coverage
from retrieval.embedder import Embedder
from retrieval.models import PACKAGED_MINILM
from tests.tiny_models import training_corpus

ZH = "试用期员工离职需要办理哪些手续？"
EN = "how do I reset my VPN token?"
ENGLISH_TEXT = [line for line in training_corpus() if line.isascii()]


def byte_level_bpe(lines: list[str]) -> Tokenizer:
    """A RoBERTa/GPT-2 style byte-level BPE tokenizer trained on `lines`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def byte_fallback_bpe(lines: list[str]) -> Tokenizer:
    """A Llama style BPE tokenizer whose unknown characters fall back to <0xNN> byte tokens."""
    vocab = {f"<0x{b:02X}>": b for b in range(256)}
    for ch in sorted({c for line in lines for c in line}):
        vocab.setdefault(ch, len(vocab))
    return Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))


@pytest.mark.parametrize("name", ["packaged", "folder"])
def test_minilm_cannot_read_chinese_by_name_or_by_folder(name, minilm_path):
    emb = Embedder(PACKAGED_MINILM if name == "packaged" else str(minilm_path)).load()
    assert emb.unreadable_scripts == ["Chinese"]
    zh = emb.coverage(ZH)
    assert zh.unreadable() == ["han"] and zh.lost["han"] >= 13
    assert "Chinese" in zh.describe()
    assert emb.coverage(EN).unreadable() == []
    assert emb.info()["unreadable_scripts"] == ["Chinese"]


def test_a_tokenizer_trained_on_chinese_reads_it():
    from tests.tiny_models import _xlmr_tokenizer

    tok = _xlmr_tokenizer(400, 0, 512)  # SentencePiece Unigram trained on Chinese and English policy lines
    assert coverage(tok, "试用期员工可以享受年假").unreadable() == []
    assert coverage(tok, "Employees may take annual leave").unreadable() == []


def test_byte_level_bpe_splitting_characters_into_bytes_cannot_read_them():
    english_only = byte_level_bpe(ENGLISH_TEXT)
    assert coverage(english_only, "员工年假").unreadable() == ["han"]
    assert coverage(english_only, "Employees may take annual leave").unreadable() == []
    bilingual = byte_level_bpe(training_corpus() * 3)
    assert coverage(bilingual, "员工可以享受年假").unreadable() == []


def test_byte_fallback_pieces_are_not_reading():
    tok = byte_fallback_bpe(ENGLISH_TEXT)
    assert any(t.startswith("<0x") for t in tok.encode("年假").tokens)
    assert coverage(tok, "员工年假").unreadable() == ["han"]
    assert coverage(tok, "annual leave").unreadable() == []


def test_one_stray_letter_does_not_decide_and_mixed_queries_are_judged_per_script(minilm_path):
    emb = Embedder(str(minilm_path)).load()
    assert emb.coverage("VPN 令").unreadable() == []  # one Chinese character: too little to judge by
    mixed = emb.coverage("VPN token 重置密码")
    assert mixed.unreadable() == ["han"] and mixed.share_lost("latin") == 0.0
