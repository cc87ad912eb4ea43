# The pipemedic worker image (used by docker-compose.kafka.yml).
#
#   docker build -t pipemedic .
#   docker run --rm -e PIPEMEDIC_BROKER_URL=kafka://broker:9092 pipemedic
#
# Wheels are built in a throwaway stage so the runtime image carries no build tools.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipemedic ./pipemedic
COPY streams ./streams
COPY agents ./agents
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIPEMEDIC_DATA_DIR=/var/lib/pipemedic
RUN useradd --system --uid 10001 --home-dir /var/lib/pipemedic pipemedic \
    && mkdir -p /var/lib/pipemedic /etc/pipemedic \
    && chown pipemedic /var/lib/pipemedic
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels pipemedic && rm -rf /wheels
USER pipemedic
WORKDIR /var/lib/pipemedic
# Faust state and, without PIPEMEDIC_CLICKHOUSE_URL, the embedded chDB store
VOLUME ["/var/lib/pipemedic"]
EXPOSE 6066
CMD ["pipemedic", "worker"]
