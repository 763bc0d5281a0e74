"""Argus tenant-api service."""

SERVICE = "tenant-api"  # its name in settings, subjects, events and metrics
