"""gunicorn settings for `relay web` and the container image (`gunicorn -c python:app.web.gunicorn_conf`).

Every value can be overridden on the command line; the environment sets the usual ones."""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import signal
import sys
from collections.abc import Callable

from gunicorn.workers.base import Worker

from app.core.logs import GUNICORN_LOGCONFIG

bind = os.environ.get("RELAY_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# `wait` on POST /v1/documents holds a thread
threads = int(os.environ.get("RELAY_WEB_THREADS", "8"))
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
    for signum in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, quit_at_once(worker))


def quit_at_once(worker: Worker, leave: Callable[[int], object] = os._exit) -> Callable:
    """The quick stop (SIGINT, SIGQUIT; what the arbiter sends its workers on Ctrl-C), made safe in a signal
    handler. gunicorn's gthread worker stops its thread pool there and then raises SystemExit: a signal that
    lands while the main thread is inside the pool's ``submit()`` waited forever for the lock ``submit()``
    holds, or left a pool thread started and unknown to the pool, which the interpreter's exit then waited
    for. Either way the process hung until the arbiter's SIGKILL, 30 s later. A quick stop ends the
    process at once instead; the requests in flight are cut short, as gunicorn's quick stop means."""

    def quit(signum, frame) -> None:
        worker.alive = False
        worker.cfg.worker_int(worker)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        leave(0)

    return quit
