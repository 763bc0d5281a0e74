"""Argus auth service."""

SERVICE = "auth"  # its name in settings, subjects, events and metrics
