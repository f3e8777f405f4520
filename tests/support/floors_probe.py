"""Run by tests/test_floors.py with the python of a venv that holds every dependency at its declared floor:
imports every module of the relay, then checks the parts of libraries the relay reaches into beyond their
stable API (subclassed internals, private methods). Prints what is missing and exits 1; else prints counts."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from operator import attrgetter

PACKAGES = ("app", "connectors", "sandbox", "schemas")

REACHED_INTO = {
    # app.work.worker.RelayCron runs RQ's cron scheduler with a loop of its own
    "rq.cron": [
        "CronScheduler.register_birth",
        "CronScheduler.register_death",
        "CronScheduler.heartbeat",
        "CronScheduler.save",
        "CronScheduler.enqueue_jobs",
        "CronScheduler.calculate_sleep_interval",
    ],
    "rq.exceptions": ["DuplicateJobError"],
    "rq.worker": ["Worker._install_signal_handlers", "Worker.prepare_execution"],
    # app.core.failover_watch cuts connections to an old primary and reconnects through the sentinels
    "redis.connection": [
        "ConnectionPool._get_free_connections",
        "ConnectionPool._get_in_use_connections",
        "AbstractConnection.mark_for_reconnect",
        "AbstractConnection.connect_check_health",
    ],
    "redis.sentinel": ["SentinelManagedConnection._connect_retry"],
    # schemas: jsonschema is given fastjsonschema's reading of "$" in patterns and of formats
    "fastjsonschema.draft04": ["DOLLAR_FINDER"],
    "fastjsonschema.draft07": ["CodeGeneratorDraft07.FORMAT_REGEXS"],
    # connectors.slack.PolicyWebClient sends slack_sdk's requests through the outbound policy
    "slack_sdk.web.base_client": ["BaseClient._perform_urllib_http_request_internal"],
    # app.web.oidc.IdentityProvider is an OpenIDMixin that gives it its session (_get_session, from 1.7)
    "authlib.integrations.base_client.sync_openid": [
        "OpenIDMixin.parse_id_token",
        "OpenIDMixin.fetch_jwk_set",
    ],
}
PARAMETERS = {
    # (module, callable): the keyword arguments the relay passes it
    ("redis.connection", "AbstractConnection.connect_check_health"): [
        "check_health",
        "retry_socket_connect",
    ],
    ("standardwebhooks.webhooks", "Webhook.verify"): ["json_parse"],  # app.domain.intake
    ("rq.cron", "CronScheduler.__init__"): ["connection", "name"],
    # app.work.worker.RelayWorker.execute_job
    ("rq.worker", "Worker.perform_job"): ["job", "queue", "execution"],
    # app.web.oidc: the audience and issuer checked, a minute of clock leeway
    ("authlib.integrations.base_client.sync_openid", "OpenIDMixin.parse_id_token"): [
        "claims_options",
        "leeway",
    ],
}


def import_everything() -> tuple[int, list[str]]:
    count, failed = 0, []
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if module.name.endswith(".__main__"):
                continue  # runs the command line
            try:
                importlib.import_module(module.name)
                count += 1
            except Exception as exc:
                failed.append(f"import {module.name}: {type(exc).__name__}: {exc}")
    return count, failed


def reached_into() -> list[str]:
    missing = []
    for module_name, paths in REACHED_INTO.items():
        for path in paths:
            try:
                attrgetter(path)(importlib.import_module(module_name))
            except (ImportError, AttributeError):
                missing.append(f"{module_name}.{path} is missing")
    for (module_name, path), names in PARAMETERS.items():
        try:
            taken = inspect.signature(attrgetter(path)(importlib.import_module(module_name)))
        except (ImportError, AttributeError):
            continue  # said above, or by the import of the relay's module that uses it
        missing += [
            f"{module_name}.{path} takes no {name}="
            for name in names
            if name not in taken.parameters
        ]
    return missing


def main() -> int:
    count, failed = import_everything()
    problems = failed + reached_into()
    for problem in problems:
        print(problem)
    print(f"{count} modules imported, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
