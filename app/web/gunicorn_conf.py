"""gunicorn settings for `relay web` and the container image (`gunicorn -c python:app.web.gunicorn_conf`).

Every value can be overridden on the command line; the environment sets the usual ones."""

from __future__ import annotations

import faulthandler
import gc
import os

from app.core.logs import GUNICORN_LOGCONFIG

bind = os.environ.get("RELAY_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("RELAY_WEB_THREADS", "8"))  # `wait` on POST /v1/documents holds a thread
timeout = 60
graceful_timeout = 30
keepalive = 5
reuse_port = True  # the kernel spreads new connections evenly over the processes (a burst is not taken by one)
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
logconfig_dict = GUNICORN_LOGCONFIG
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


faulthandler.enable()  # the arbiter; each web process enables it again below


def post_fork(server, worker) -> None:
    faulthandler.enable()  # a crash writes every thread's stack to the log


def post_worker_init(worker) -> None:
    """The app is loaded: take its ~100k long-lived objects (schemas, templates, libraries) out of the
    garbage collector's sight. Otherwise a full collection walks them all now and then, ~40 ms with every
    thread of the process stopped, and the requests in flight then (a burst of Slack commands) wait."""
    gc.freeze()


def child_exit(server, worker) -> None:
    """Tell prometheus_client a web process is gone (its live gauges stop counting)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # only in multiprocess mode

        multiprocess.mark_process_dead(worker.pid)
