"""What one rerank request may hold, for every face that reranks text a person sends: the API's /rerank (and its
Cohere and TEI twins) and the app's Rerank playground check it here, against the same settings
(`api_max_query_chars`, `api_max_documents`, `api_max_text_chars`), so the two cannot drift apart. How many such
requests run at once is `app.api.limits.Admission`'s job, in the API and in the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import KbError
from ..settings import Settings


@dataclass(frozen=True)
class RerankLimits:
    max_query_chars: int
    max_documents: int
    max_text_chars: int

    @classmethod
    def of(cls, s: Settings) -> RerankLimits:
        return cls(s.api_max_query_chars, s.api_max_documents, s.api_max_text_chars)

    def check(self, query: str, texts: Sequence[str]) -> str:
        """The query, stripped, when `query` and `texts` are within the limits. KbError bad_request for an empty
        query or no texts; too_large naming the count, the limit and its setting when one is over."""
        query = query.strip()
        if not query:
            raise KbError("bad_request", "query is empty; send a question in `query`")
        if len(query) > self.max_query_chars:
            raise KbError("too_large", f"query has {len(query)} characters; the limit is {self.max_query_chars} "
                                       "(setting api_max_query_chars)")
        if not texts:
            raise KbError("bad_request", "no documents to rerank: send at least one in `documents` (or `texts`)")
        if len(texts) > self.max_documents:
            raise KbError("too_large", f"{len(texts)} documents; the limit is {self.max_documents} per request "
                                       "(setting api_max_documents): split the request")
        total = sum(len(t) for t in texts)
        if total > self.max_text_chars:
            raise KbError("too_large", f"{total} characters of documents; the limit is {self.max_text_chars} per "
                                       "request (setting api_max_text_chars)")
        return query
