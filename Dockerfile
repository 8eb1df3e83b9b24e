# The M3 API image: FastAPI + TiTiler + onnxruntime (no torch), the map page and its npm packages.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY frontend/package.json frontend/package-lock.json frontend/
RUN cd frontend && npm ci --no-audit --no-fund

COPY pyproject.toml README.md alembic.ini ./
COPY backend backend
COPY model model
COPY alembic alembic
COPY data data
COPY frontend/index.html frontend/
COPY frontend/src frontend/src
COPY runs/demo/model.onnx runs/demo/model.json runs/demo/
# Editable install: the code finds data/, alembic/ and frontend/ beside itself. The Ray nodes of
# docker-compose.yml's ray profile build it with M3_EXTRAS=serve,scale.
ARG M3_EXTRAS=serve
RUN pip install -e ".[${M3_EXTRAS}]"

RUN useradd --create-home --uid 1000 m3 && mkdir -p /data && chown m3 /data
USER m3
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["m3", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
