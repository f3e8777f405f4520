"""What the relay decides: a submit, a webhook from the API, a Slack command, a finished task's deliveries,
exports and retention. No Flask here; work for later is queued by name (app.stores.queues.job)."""
