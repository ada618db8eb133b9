"""Markdown: keeps `#` heading structure, reads YAML front-matter (title, acl, …), drops HTML comments and link
targets so that only readable text is indexed."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

import yaml

from .base import Loaded
from .text import decode_text

_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split YAML front-matter from the body. Malformed front-matter raises ValueError naming the problem."""
    match = _FRONT.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"front-matter is not valid YAML ({exc.__class__.__name__}); fix or remove it") from exc
    if not isinstance(meta, dict):
        raise ValueError("front-matter must be a YAML mapping such as 'title: ...'")
    return meta, text[match.end():]


def load_markdown(name: str, data: bytes) -> Loaded:
    text, encoding = decode_text(data)
    front, body = parse_front_matter(text)
    body = _COMMENT.sub("", body)
    body = _IMAGE.sub(r"\1", body)
    body = _LINK.sub(r"\1", body)
    body = _EMPHASIS.sub(r"\2", body)
    h1 = _H1.search(body)
    title = str(front.get("title") or (h1.group(1) if h1 else PurePath(name).stem))
    fields = {k: v for k, v in front.items() if k not in ("acl", "title")}
    meta: dict[str, Any] = {"encoding": encoding, "fields": fields}
    if "acl" in front:
        meta["acl"] = front["acl"]
    return Loaded(title=title, text=body, meta=meta)
