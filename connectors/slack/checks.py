"""The check of a Slack destination (Kind.check): the bot token signs in (auth.test), the app has the scopes a
delivery uses (Slack lists them in X-OAuth-Scopes), and the bot is in the channel or may join it
(conversations.info). Nothing is posted, and the bot joins nothing."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from ..base import Check, Delivery, DeliveryError, Environment, Verdict
from . import web_client

_NEEDED = ("chat:write", "files:write")
_REINSTALL = "Add it in the app's OAuth & Permissions page (or from the relay's manifest) and reinstall the app."


def check(target: Delivery, env: Environment) -> list[Check]:
    config = target.config
    channel = config["channel"]
    client = web_client(config, env)
    try:
        signed_in = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        return [
            Check(
                "signs in",
                Verdict.FAILURE,
                f"Slack refused the bot token ({error or exc.response.status_code}).",
                "Install the app again and use its bot token (xoxb-...).",
            )
        ]
    except Exception as exc:
        return [Check("signs in", Verdict.FAILURE, _unreachable(exc))]
    team = signed_in.get("team") or signed_in.get("team_id") or "the workspace"
    checks = [Check("signs in", Verdict.PASS, f"Signed in as the app's bot in {team}.")]
    granted = {
        scope.strip()
        for scope in str(signed_in.headers.get("x-oauth-scopes") or "").split(",")
        if scope.strip()
    }
    missing = [scope for scope in _NEEDED if scope not in granted]
    if missing:
        checks.append(
            Check(
                "has the scopes",
                Verdict.FAILURE,
                f"The app lacks the scopes {', '.join(missing)}, which sharing a file needs.",
                _REINSTALL,
            )
        )
    else:
        checks.append(
            Check("has the scopes", Verdict.PASS, "The app has chat:write and files:write.")
        )
    checks.append(_membership(client, channel, granted))
    return checks


def _membership(client, channel: str, granted: set[str]) -> Check:
    """Whether a file can be shared in the channel: the bot is a member, or may join it (a public channel,
    with channels:join)."""
    invite = f"Invite the bot to the channel: in Slack, /invite @Overten in {channel}."
    try:
        info = client.conversations_info(channel=channel)["channel"]
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        if error == "channel_not_found":
            return Check(
                "the bot is in the channel",
                Verdict.FAILURE,
                f"Slack shows the bot no channel {channel}: it does not exist, or it is private and "
                "the bot was not invited.",
                invite,
            )
        if error == "missing_scope":
            needed = exc.response.get("needed", "channels:read")
            return Check(
                "the bot is in the channel",
                Verdict.WARNING,
                f"The app cannot read the channel's members (no {needed} scope); a delivery fails "
                "with not_in_channel if the bot is not in it.",
                f"{_REINSTALL} Or make sure the bot is in the channel.",
            )
        return Check("the bot is in the channel", Verdict.FAILURE, f"Slack refused: {error}.")
    except Exception as exc:
        return Check("the bot is in the channel", Verdict.FAILURE, _unreachable(exc))
    if info.get("is_member"):
        return Check(
            "the bot is in the channel", Verdict.PASS, f"The bot is a member of {channel}."
        )
    if not info.get("is_private") and "channels:join" in granted:
        return Check(
            "the bot is in the channel",
            Verdict.PASS,
            f"The bot is not in {channel} yet and joins it with the first delivery (channels:join).",
        )
    why = "it is private" if info.get("is_private") else "the app lacks the channels:join scope"
    return Check(
        "the bot is in the channel",
        Verdict.FAILURE,
        f"The bot is not a member of {channel} and cannot join it ({why}); Slack shares files only "
        "with members (not_in_channel).",
        invite,
    )


def _unreachable(exc: Exception) -> str:
    if isinstance(exc, DeliveryError):
        return exc.message
    return f"Slack could not be reached: {type(exc).__name__}"
