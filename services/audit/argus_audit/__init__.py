"""Argus audit service."""

SERVICE = "audit"  # its name in settings, subjects, events and metrics
