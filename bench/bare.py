"""The baseline for bench/ingest: a Flask app whose only route answers 204, served the same way."""

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/bare")
    def bare():
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
