"""The baseline for bench/ingest: a Flask app whose only route answers 204, served the same way."""

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/bare")
    def bare():
        return "", 204

    return app
