"""Argus webhooks service."""
