"""The Slack app: the /overten slash command, its follow-ups, and workspace installs (OAuth v2)."""
