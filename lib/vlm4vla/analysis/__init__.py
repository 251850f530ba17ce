"""Analyses behind the finding notebooks: loading cached runs, tables, correlations, figures, conclusions.

Everything here reads pipeline outputs (``artifacts/``) and is deterministic, so re-running a finding
notebook from cached runs changes nothing.
"""
