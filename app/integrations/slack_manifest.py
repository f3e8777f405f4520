"""The Slack app manifest: the /overten command, the OAuth redirect and the bot scopes the relay uses."""

from __future__ import annotations

from typing import Any

import yaml

COMMAND = "/overten"
BOT_SCOPES = [
    "commands",
    "chat:write",
    "files:write",
    "channels:join",
    "channels:read",
    "groups:read",
]
"""What the relay calls needs: the command; posting and sharing files (in channels the bot is a member of);
joining a public channel it is not in yet, instead of a not_in_channel failure; and reading a channel's
membership for the destination check (public channels, and private ones it was invited to)."""
USAGE = "excel|word|slides <prompt> · continue <prompt> · status · export pdf · help"


def manifest(public_url: str) -> dict[str, Any]:
    base = public_url.rstrip("/")
    return {
        "display_information": {
            "name": "Overten Relay",
            "description": "Excel, Word and PowerPoint documents from a prompt, in the channel.",
            "background_color": "#1d3557",
        },
        "features": {
            "bot_user": {"display_name": "Overten", "always_online": False},
            "slash_commands": [
                {
                    "command": COMMAND,
                    "url": f"{base}/slack/commands",
                    "description": "Build or change this channel's document",
                    "usage_hint": USAGE,
                    "should_escape": False,
                }
            ],
        },
        "oauth_config": {
            "redirect_urls": [f"{base}/slack/oauth/callback"],
            "scopes": {"bot": BOT_SCOPES},
        },
        "settings": {
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


def manifest_yaml(public_url: str) -> str:
    return yaml.safe_dump(manifest(public_url), sort_keys=False, allow_unicode=True)
