# Multi-stage image: wheels are built in the first stage, installed into a venv in a slim runtime that runs
# as a non-root user. The two RUN steps are deploy/build-wheels.sh and deploy/install.sh, which .ci/run
# runs too (then starts the installed relay end to end), so the image's steps are tested on every change.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY app ./app
COPY connectors ./connectors
COPY sandbox ./sandbox
COPY schemas ./schemas
COPY deploy ./deploy
RUN sh deploy/build-wheels.sh /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 relay
COPY --from=build /wheels /wheels
COPY deploy/install.sh /tmp/install.sh
RUN sh /tmp/install.sh /opt/relay /wheels && rm -rf /wheels /tmp/install.sh
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/relay-metrics \
    RELAY_FOLDER_ROOTS=/home/relay/deliveries
USER relay
WORKDIR /home/relay
RUN mkdir -p /tmp/relay-metrics /home/relay/deliveries
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"
# `relay web` runs gunicorn with app/web/gunicorn_conf.py; `relay worker`, `relay scheduler` and
# `relay sandbox serve` are the other processes (see docker-compose.yml).
CMD ["relay", "web", "--host", "0.0.0.0", "--port", "8080"]
