"""Reusable heads that task plugins register under their own names."""
