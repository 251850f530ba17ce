"""See the package docstring of vlm4vla for what this part may import."""
