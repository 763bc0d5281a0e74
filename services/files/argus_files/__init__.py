"""Argus files service."""
