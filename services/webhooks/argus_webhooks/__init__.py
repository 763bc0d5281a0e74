"""Argus webhooks service."""

SERVICE = "webhooks"  # its name in settings, subjects, events and metrics
