"""Reranker errors. Each message names the parameter or file, the bad value, what is allowed, and the fix."""

from __future__ import annotations


class RerankError(Exception):
    """Base class of the reranker's own errors."""


class RerankerParameterError(RerankError, ValueError):
    """A setting or argument is out of range (batch_size, max_length, long_passage, device, dtype, threshold…)."""

    kind = "validation"  # app.errors maps it to an HTTP status and an exit code

    def __init__(self, parameter: str, value: object, allowed: str, fix: str):
        self.parameter, self.value, self.allowed, self.fix = parameter, value, allowed, fix
        super().__init__(f"{parameter}={value!r} is not allowed: {allowed}; {fix}")


class RerankerLoadError(RerankError, RuntimeError):
    """The model could not be loaded (missing, broken, or not a reranker). The message says why and what to do."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code


class CudaOOMExhausted(RerankError, RuntimeError):
    """CUDA ran out of memory even at batch size 1 (the engine then falls back to CPU)."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code


class RerankerClosed(RerankError, RuntimeError):
    """A batching reranker was closed (its model swapped, or the server stopping) before a request was scored."""

    kind = "not_ready"  # app.errors maps it to an HTTP status and an exit code; a retry reaches the new model
