"""The baseline for bench/ingest: a Flask app whose only route answers 204, served the same way."""

import os
import time

from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/bare")
    def bare():
        return "", 204

    return app


def arrivals() -> Flask:
    """bench/scale's REST-hook subscriber: notes when each task's event arrived, one line per request
    appended to the file BENCH_ARRIVALS names (small appends to one file are atomic)."""
    app = Flask(__name__)
    path = os.environ["BENCH_ARRIVALS"]

    @app.post("/hook")
    def hook():
        arrived = time.time()
        with open(path, "a") as out:
            out.write(f"{request.get_json()['data']['task_id']} {arrived}\n")
        return "", 204

    return app


def slack_baseline() -> Flask:
    """bench/slack's baseline: answers a form POST with a fixed ephemeral JSON message."""
    app = Flask(__name__)

    @app.post("/slack/commands")
    def command():
        return {"response_type": "ephemeral", "text": "ok"}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app
