"""`relay dev`: the whole product on one machine."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import click
import httpx

from app.cli.devstack import DevStack, free_port, port_is_free
from app.cli.submit import describe, submit_document
from app.core.config import RelayConfig
from app.core.states import DELIVERY_SETTLED
from app.stores.context import build_context

DEMO_PROMPT = "Create a Q3 sales report by region with a chart"


@click.command()
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    show_default=True,
    default=lambda: Path(os.environ.get("RELAY_RUN_DIR", "var/dev")),
    help="Where Redis data, generated files and logs go.",
)
@click.option(
    "--port", type=int, default=8080, show_default=True, help="Port of the relay's web service."
)
@click.option(
    "--prompt", default=DEMO_PROMPT, show_default=True, help="The demo generation's prompt."
)
@click.option(
    "--exit-after-demo", is_flag=True, help="Stop everything once the demo file is written."
)
def dev(run_dir: Path, port: int, prompt: str, exit_after_demo: bool) -> None:
    """Run the whole product locally: private Redis, the sandbox API, the relay (web, worker,
    scheduler), and one real generation submitted through the relay."""
    if not port_is_free(port):
        raise click.ClickException(
            f"port {port} is already in use: stop what runs there or pass --port"
        )
    stack = DevStack(run_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # explicitly: started in the background without a terminal, a process inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        redis_url = stack.start_redis()
        sandbox_url = stack.start_sandbox(free_port())
        relay_url = f"http://127.0.0.1:{port}"
        secrets = {k.removeprefix("RELAY_").lower(): v for k, v in stack.relay_secrets().items()}
        metrics = stack.run_dir / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)  # counters of the last run's processes
        config = RelayConfig.from_env(
            redis_url=redis_url,
            public_url=relay_url,
            outbound_allow="127.0.0.0/8",
            folder_roots=str(stack.run_dir / "deliveries"),
            metrics_dir=str(metrics),
            **secrets,
        )
        org = stack.create_sandbox_org("demo")
        ctx = build_context(config)
        tenant, api_key = ctx.tenants.create(
            "demo", sandbox_url, org["api_key"], org["webhook_secret"]
        )
        (stack.run_dir / "demo-api-key.txt").write_text(api_key + "\n")
        stack.start_relay(port, {**os.environ, **config.to_env()})
        click.echo(f"redis    {redis_url}")
        click.echo(f"sandbox  {sandbox_url}")
        click.echo(
            f"relay    {relay_url}  (tenant {tenant.name}; API key in {stack.run_dir / 'demo-api-key.txt'})"
        )
        click.echo(
            f"admin    {relay_url}/dashboard  (admin token in {stack.run_dir / 'secrets.json'}: "
            "RELAY_ADMIN_TOKEN)"
        )
        demo = {
            "format": "excel",
            "prompt": prompt,
            "record_key": "demo:quarterly-report",
            "destinations": [{"kind": "folder", "config": {"path": "demo"}}],
        }
        task = submit_document(relay_url, api_key, demo, follow=True)
        if task["status"] != "completed":
            raise click.ClickException(
                f"the demo generation ended {task['status']}: {task.get('error')}"
            )
        delivery = _wait_delivered(relay_url, api_key, task["task_id"])
        click.echo(f"\nfile     {delivery['location']}")
        for line in describe({**task, "deliveries": [delivery]})[1:]:
            click.echo(line)
        if task["result"].get("edit_url"):
            click.echo(f"view     {task['result']['edit_url']}")
        if exit_after_demo:
            return
        click.echo(
            f"\nEverything is running. Try:  RELAY_API_KEY=$(cat {stack.run_dir / 'demo-api-key.txt'}) "
            f"relay submit --wait --record-key demo:quarterly-report 'Now add a forecast tab for FY26'"
        )
        click.echo("Press Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("\nstopping")
    finally:
        # a second Ctrl-C must not cut the stop short
        for signum in (
            signal.SIGINT,
            signal.SIGTERM,
        ):
            signal.signal(signum, signal.SIG_IGN)
        stack.stop()


def _wait_delivered(relay_url: str, api_key: str, task_id: str, timeout: float = 60) -> dict:
    """The demo's folder delivery, once it has settled."""
    deadline = time.monotonic() + timeout
    with httpx.Client(
        base_url=relay_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as client:
        while time.monotonic() < deadline:
            found = client.get(f"/v1/tasks/{task_id}").raise_for_status().json()["deliveries"]
            if found and found[0]["state"] in DELIVERY_SETTLED:
                if found[0]["state"] == "dead":
                    raise click.ClickException(
                        f"the demo delivery failed: {found[0]['last_error']}"
                    )
                return found[0]
            time.sleep(0.2)
    raise click.ClickException("the demo delivery did not finish in time (see worker.log)")
