"""Sentence-transformers embedders: L2-normalised float32 vectors, the right query instruction per model family.

Cheap `__init__`, explicit `load()`. Device and dtype are chosen once at load (CUDA → float16, CPU → float32).
When the configured model is not available locally and the hub cannot be reached, `load()` falls back to the
packaged all-MiniLM-L6-v2 and records a warning naming the missing model and how to get it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .coverage import SCRIPT_NAMES, Coverage, coverage
from .device import DeviceChoice, choose_device
from .models import PACKAGED_MINILM, ModelNotAvailable, ResolvedModel, resolve_model

log = logging.getLogger(__name__)

# BGE v1.5 models were trained with an instruction on the query side (FlagEmbedding's defaults); bge-m3 uses none.
_QUERY_INSTRUCTIONS = {
    "bge-small-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "bge-base-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "bge-large-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "bge-small-zh-v1.5": "为这个句子生成表示以用于检索相关文章：",
    "bge-base-zh-v1.5": "为这个句子生成表示以用于检索相关文章：",
    "bge-large-zh-v1.5": "为这个句子生成表示以用于检索相关文章：",
}


# A line of the words a knowledge base of HR and IT policies is made of, in the scripts it is written in.
PROBE = ("员工年假工资劳动合同试用期离职报销发票密码安全事件入职远程办公审批 employee annual leave salary contract "
         "probation expense password security incident remote work approval")


def query_instruction_for(name: str) -> str:
    """The instruction prepended to queries for a model name or folder (matched on its last path part)."""
    return _QUERY_INSTRUCTIONS.get(name.rstrip("/").split("/")[-1].lower(), "")


class Embedder:
    def __init__(self, name: str, device: str = "auto", dtype: str = "auto", models_dir: str = "models",
                 batch_size: int = 32, allow_fallback: bool = True):
        self.requested = name
        self.device_request, self.dtype_request = device, dtype
        self.models_dir = models_dir
        self.batch_size = batch_size
        self.allow_fallback = allow_fallback
        self.warning: str | None = None
        self.resolved: ResolvedModel | None = None
        self.choice: DeviceChoice | None = None
        self._model = None
        self._tokenizer = None

    # ---- loading -------------------------------------------------------------------------------------------
    def load(self) -> Embedder:
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        try:
            self.resolved = resolve_model(self.requested, self.models_dir)
        except ModelNotAvailable as exc:
            if not self.allow_fallback:
                raise
            self.warning = f"embedder {self.requested!r} unavailable, using the packaged all-MiniLM-L6-v2 " \
                           f"(English only) instead: {exc}"
            log.warning(self.warning)
            self.resolved = resolve_model(PACKAGED_MINILM)
        self.choice = choose_device(self.device_request, self.dtype_request)
        model = SentenceTransformer(self.resolved.path, device=self.choice.device, trust_remote_code=False)
        if self.choice.dtype != "float32":
            model = model.to(self.choice.torch_dtype())
        self._model = model
        # A private copy of the fast tokenizer without truncation: counts must see the whole text.
        tok = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
        tok.no_truncation()
        tok.no_padding()
        self._tokenizer = tok
        return self

    @property
    def model(self):
        if self._model is None:
            raise RuntimeError("Embedder.load() must be called before use")
        return self._model

    # ---- description ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The model actually in use (the fallback's name after a fallback)."""
        return self.resolved.name if self.resolved else self.requested

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def query_instruction(self) -> str:
        if self.resolved and self.resolved.origin == "packaged":
            return ""
        return query_instruction_for(self.name)

    def coverage(self, text: str) -> Coverage:
        """What of `text` this model's tokenizer can represent, per script (`retrieval.coverage`)."""
        if self._tokenizer is None:
            raise RuntimeError("Embedder.load() must be called before use")
        return coverage(self._tokenizer, text)

    @property
    def unreadable_scripts(self) -> list[str]:
        """The scripts of the usual HR/IT text this model cannot read (judged by its tokenizer on a probe)."""
        return [SCRIPT_NAMES[s] for s in self.coverage(PROBE).unreadable()]

    def info(self) -> dict:
        return {
            "requested": self.requested, "name": self.name, "path": self.resolved.path if self.resolved else None,
            "origin": self.resolved.origin if self.resolved else None,
            "revision": self.resolved.revision if self.resolved else None,
            "dim": self.dim, "max_seq_length": self.max_seq_length, "query_instruction": self.query_instruction,
            "unreadable_scripts": self.unreadable_scripts,
            "device": self.choice.to_dict() if self.choice else None, "warning": self.warning,
        }

    # ---- work ----------------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens the model would read for `text`, special tokens included, never truncated."""
        if self._tokenizer is None:
            raise RuntimeError("Embedder.load() must be called before use")
        return len(self._tokenizer.encode(text).ids)

    def _encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_passages(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """float32 [n, dim], unit length. Passages get no instruction."""
        return self._encode(texts, show_progress)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, dim], unit length, with the model's query instruction."""
        prefix = self.query_instruction
        return self._encode([prefix + t for t in texts], False)
