"""Request and response bodies. Bounds live here so that FastAPI answers 422 naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from rerank.params import BUDGET_MS_RANGE, THRESHOLD_RANGE, TOP_N_RANGE
from retrieval.types import MODES, TOP_K_RANGE


def _encodable(value: str) -> str:
    """JSON can carry a lone UTF-16 surrogate (`"\\ud800"`); such a string can be neither tokenized nor sent back,
    so it is refused here (422 naming the field) instead of failing later as a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"unpaired UTF-16 surrogate {value[exc.start]!r} at character {exc.start}: "
                         "send valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]


class SearchBody(BaseModel):
    """The body of POST /search; the route turns it into the service's `SearchRequest`."""

    model_config = ConfigDict(extra="forbid")

    query: Text = Field(..., description="the question, e.g. 试用期员工离职需要办理哪些手续？")
    top_k: int | None = Field(None, strict=True, ge=TOP_K_RANGE[0], le=TOP_K_RANGE[1],
                              description="recall size K [default: settings]")
    top_n: int | None = Field(None, strict=True, ge=TOP_N_RANGE[0], le=TOP_N_RANGE[1],
                              description="results shown N [default: settings]")
    threshold: float | None = Field(None, ge=THRESHOLD_RANGE[0], le=THRESHOLD_RANGE[1],
                                    description="minimum normalised score [default: settings]")
    preset: Literal["strict", "balanced", "recall"] | None = Field(
        None, description="threshold preset (strict 0.75, balanced 0.5, recall 0.4); `threshold` wins if both")
    mode: Literal[MODES] | None = None
    groups: list[Text] | None = Field(None, max_length=100, description="restrict to these access groups")
    max_per_doc: int | None = Field(None, strict=True, ge=1, le=TOP_N_RANGE[1],
                                    description="at most this many results per document")
    merge_adjacent: bool | None = Field(None, description="join neighbouring chunks of one document")
    filters: dict[Text, Text | list[Text]] | None = Field(
        None, max_length=50, description='document metadata every result must match: {"format": ["pdf"], '
        '"department": "hr", "path": "policies/it", "updated": ">=2024-01-01"}; several values of one key mean any '
        "of them. Keys: format, path (folder), title (contains), updated (date, with >=, <=, >, <) and any field of "
        "the documents' front-matter or sidecar. An unknown key or a bad date is a 422 that lists the known keys")
    include_hidden: bool = Field(False, description="also return results below the threshold")
    rerank_budget_ms: int | None = Field(None, strict=True, ge=BUDGET_MS_RANGE[0], le=BUDGET_MS_RANGE[1],
                                         description="rerank only the best-recalled candidates that fit in this "
                                         "many ms (at least top_n); the rest follow in recall order with "
                                         "`reranked: false`; 0: rerank all K [default: settings]")


class CohereDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: Text


class RerankRequest(BaseModel):
    """Cohere's shape (`documents`, v1 and v2) or TEI's (`texts`); exactly one of them."""

    model_config = ConfigDict(extra="ignore")  # clients send model, rank_fields, max_chunks_per_doc, truncate…

    query: Text
    documents: list[Text | CohereDocument] | None = None
    texts: list[Text] | None = None
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    raw_scores: bool = False
    return_text: bool = False
    model: Text | None = None

    @model_validator(mode="after")
    def _one_list(self) -> RerankRequest:
        if (self.documents is None) == (self.texts is None):
            raise ValueError("give either `documents` (Cohere) or `texts` (TEI), not both and not neither")
        return self

    @property
    def tei(self) -> bool:
        return self.texts is not None

    def candidate_texts(self) -> list[str]:
        if self.texts is not None:
            return list(self.texts)
        return [d if isinstance(d, str) else d.text for d in self.documents or []]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    raw_score: float
    document: dict[str, Any] | None = None


class RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    meta: dict[str, Any]


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class DocumentInfo(BaseModel):
    doc_id: str
    source: str
    title: str
    format: str
    chunks: int
    acl: list[str]
    ingested_at: float
    status: str = "indexed"
    fields: dict[str, str | list[str]] = Field(default_factory=dict, description="its own metadata (front-matter "
                                               "or sidecar): what `filters` match")
    updated: str | None = Field(None, description="the date it states about itself, if any")


class FilterChoices(BaseModel):
    keys: list[str] = Field(..., description="every key `filters` accepts on the documents you may read")
    values: dict[str, list[str]] = Field(..., description="for keys with a few distinct values, those values")


class FeedbackRequest(BaseModel):
    """A judgment on a result of a search (its `query_id` from POST /search)."""

    model_config = ConfigDict(extra="forbid")

    query_id: Text = Field(..., min_length=1, max_length=64, description="the search judged")
    chunk_id: Text | None = Field(None, max_length=512, description="a chunk it returned; null: none of its results "
                                  "answers the question (then useful is false)")
    useful: bool
    comment: Text | None = Field(None, max_length=2000)
