# Multi-stage image: build a wheel, install it into a slim runtime that runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY connectors ./connectors
COPY sandbox ./sandbox
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 relay
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER relay
WORKDIR /home/relay
ENV SANDBOX_DATA_DIR=/home/relay/sandbox-data
EXPOSE 8090
# The sandbox API; point SANDBOX_REDIS_URL at your Redis.
CMD ["python", "-m", "sandbox", "serve", "--host", "0.0.0.0", "--port", "8090"]
