"""Argus tenant-api service."""
