"""The library every Argus service imports."""
