"""Relay: the no-code connector and webhook relay for the Overten document-generation API.

The packages follow the data (docs/architecture.md); each imports only those below it:

- ``web``, ``cli``: requests come in (the HTTP API, Slack, the API's webhooks; the command line).
- ``work``: work is carried out in worker processes (the intake and delivery lanes, RQ's jobs).
- ``domain``: what a submit, a webhook, a command or a finished task means, decided without Flask.
- ``integrations``: the Zapier, Make and Slack apps, generated from the relay's contract.
- ``stores``: what is kept in Redis (tasks, tenants, records, the intake and lane streams, RQ queues).
- ``core``: what knows nothing of the relay's data (config, ids, crypto, logs, metrics, the API client).

Results leave through the top-level ``connectors`` package, which never imports ``app``.
"""
