"""What knows nothing of the relay's data: configuration, ids, encryption, signed tokens, logs, metrics,
storage trouble, stream helpers, the outbound policy and the client of the Overten API."""
