"""The `relay` command."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click
import httpx

from .devstack import DevStack, free_port
from .progress import ProgressLine

TERMINAL = {"completed", "failed", "cancelled", "expired"}
DEMO_PROMPT = "Create a Q3 sales report by region with a chart"


@click.group()
def main() -> None:
    """Relay: no-code connectors and a webhook relay for the Overten document-generation API."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sandbox(args: tuple[str, ...]) -> None:
    """The local Overten API stand-in: `relay sandbox serve`, `relay sandbox orgs create NAME`.

    Runs `python -m sandbox` in its own process (the relay never imports the sandbox). Without
    SANDBOX_REDIS_URL it uses the private Redis of `relay dev` under RELAY_RUN_DIR (default var/dev),
    starting it if needed.
    """
    env = dict(os.environ)
    if "SANDBOX_REDIS_URL" not in env:
        stack = DevStack(Path(env.get("RELAY_RUN_DIR", "var/dev")))
        stack.start_redis()
        env.update(stack.sandbox_env())
    os.execve(sys.executable, [sys.executable, "-m", "sandbox", *(args or ("--help",))], env)


@main.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(os.environ.get("RELAY_RUN_DIR", "var/dev")),
              show_default=True, help="Where Redis data, generated files and logs go.")
@click.option("--sandbox-port", type=int, default=0, help="Port for the sandbox API (default: a free one).")
@click.option("--prompt", default=DEMO_PROMPT, show_default=True, help="The demo generation's prompt.")
@click.option("--exit-after-demo", is_flag=True, help="Stop everything once the demo file is written.")
def dev(run_dir: Path, sandbox_port: int, prompt: str, exit_after_demo: bool) -> None:
    """Run the whole product locally: private Redis, the sandbox API, and one real generation."""
    stack = DevStack(run_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        click.echo(f"redis    {stack.start_redis()}")
        sandbox_url = stack.start_sandbox(sandbox_port or free_port())
        click.echo(f"sandbox  {sandbox_url}")
        org = stack.create_sandbox_org("demo")
        click.echo(f"demo org {org['org_id']} (API key in {run_dir / 'demo-org.txt'})")
        (stack.run_dir / "demo-org.txt").write_text(f"{org['api_key']}\n{org['webhook_secret']}\n")
        path, task = _demo_generation(sandbox_url, org["api_key"], prompt, stack.run_dir / "output")
        click.echo(f"\nfile     {path}")
        click.echo(f"summary  {task['result']['summary']}")
        click.echo(f"download {task['result']['download_url']}")
        click.echo(f"view     {task['result']['edit_url']}")
        if exit_after_demo:
            return
        click.echo("\nEverything is running. Press Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("\nstopping")
    finally:
        stack.stop()


def _demo_generation(base: str, api_key: str, prompt: str, out_dir: Path) -> tuple[Path, dict]:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        accepted = client.post("/excel/generate", json={"prompt": prompt, "async": True}).raise_for_status().json()
        progress = ProgressLine()
        while True:
            task = client.get(f"/tasks/{accepted['task_id']}").raise_for_status().json()
            progress.update(task["status"], task["phase"], task["progress"], task["turn_index"])
            if task["status"] in TERMINAL:
                break
            time.sleep(0.5)
        progress.done()
        if task["status"] != "completed":
            raise click.ClickException(f"the demo generation ended {task['status']}: {task['error']}")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{accepted['run_id']}.xlsx"
        with client.stream("GET", task["result"]["download_url"]) as response, path.open("wb") as file:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                file.write(chunk)
    return path.resolve(), task


if __name__ == "__main__":
    main()
