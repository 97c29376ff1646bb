"""Capacity planning: SLO-driven candidate search, serving-simulator confirmation, reports."""
