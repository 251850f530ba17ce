"""Demonstration datasets (and later the general corpus and auxiliary datasets). Uses ``envs``.

See the package docstring of vlm4vla for what this part may import. Knows no model.
"""
