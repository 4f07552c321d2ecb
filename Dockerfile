# queuekit: API, worker and CLI in one image. Build: docker build -t queuekit .
FROM python:3.11-slim AS build
# A C compiler for mypyc: the image ships queuekit's compiled hot path (see pyproject.toml).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN HATCH_BUILD_HOOKS_ENABLE=1 pip install --no-cache-dir --prefix=/install ".[all,examples]" \
    && PYTHONPATH=/install/lib/python3.11/site-packages python -c \
       "import queuekit.worker.runtime as m; assert m.__file__.endswith('.so'), m.__file__"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    SQLITE_PATH=/data/queuekit.db \
    IDEMPOTENCY_STORE=/data/idempotency.db
COPY --from=build /install /usr/local
WORKDIR /app
COPY examples ./examples
RUN useradd --system --uid 10001 --home /app queuekit \
    && mkdir -p /data && chown queuekit /data
USER queuekit
VOLUME ["/data"]
EXPOSE 8080 9100
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('API_PORT','8080'))" || exit 1
CMD ["queuekit", "run"]
