"""Argus audit service."""
