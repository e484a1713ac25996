"""Scoring against reference fields: evaluate, validate (and tune), HTML report."""
