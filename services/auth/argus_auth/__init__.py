"""Argus auth service."""
