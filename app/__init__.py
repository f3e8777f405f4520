"""Relay: the no-code connector and webhook relay for the Overten document-generation API."""
