"""gunicorn settings for `relay web` and the container image (`gunicorn -c python:app.gunicorn_conf`).

Every value can be overridden on the command line; the environment sets the usual ones."""

from __future__ import annotations

import os

from app.logs import GUNICORN_LOGCONFIG

bind = os.environ.get("RELAY_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("RELAY_WEB_THREADS", "8"))  # `wait` on POST /v1/documents holds a thread
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
logconfig_dict = GUNICORN_LOGCONFIG
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker) -> None:
    """Tell prometheus_client a web process is gone (its live gauges stop counting)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
