"""Settings: defaults < config file (`kb.toml`, or the file named by `KB_CONFIG`) < `KB_*` environment variables.

Read once with `get_settings()`; code below `app/` receives values as arguments, never reads settings itself.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

DEFAULT_CONFIG = "kb.toml"


def config_path() -> Path:
    return Path(os.environ.get("KB_CONFIG", DEFAULT_CONFIG))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KB_", extra="ignore", validate_default=True)

    index_dir: Path = Field(Path("data/index"), description="where the built index lives (git-ignored)")
    models_dir: Path = Field(Path("models"), description="local model folders, e.g. models/reranker_zh_v2")
    embedder: str = Field("BAAI/bge-m3", description="sentence-transformers model: hub name or local folder")
    reranker: str = Field("BAAI/bge-reranker-v2-m3", description="cross-encoder: hub name, folder, or 'none'")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"

    top_k: int = Field(50, ge=1, le=1000, description="recall size K")
    top_n: int = Field(5, ge=1, le=100, description="results shown N")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="minimum normalised reranker score shown")
    recall_mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    dense_weight: float = Field(1.0, ge=0.0)
    lexical_weight: float = Field(1.0, ge=0.0)
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion constant")

    chunk_max_tokens: int = Field(512, ge=16, le=8192)
    chunk_overlap: int = Field(32, ge=0)
    max_file_mb: float = Field(20.0, gt=0)
    ann_threshold: int = Field(50_000, ge=0, description="above this many chunks the dense index is HNSW")

    rerank_batch_size: int = Field(32, ge=1, le=1024)
    rerank_max_length: int = Field(512, ge=32, le=8192)
    long_passage: Literal["max", "mean", "first"] = "max"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        # No .env or secrets files; highest priority first: arguments, KB_* variables, the config file.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_path())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
