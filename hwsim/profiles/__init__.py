"""Validated hardware and model profiles, and the loader that finds them."""
