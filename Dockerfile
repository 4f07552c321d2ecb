# queuekit: API, worker and CLI in one image. Build: docker build -t queuekit .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install ".[all,examples]"

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
