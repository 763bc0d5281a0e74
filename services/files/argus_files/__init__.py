"""Argus files service."""

SERVICE = "files"  # its name in settings, subjects, events and metrics
