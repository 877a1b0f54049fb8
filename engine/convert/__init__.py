"""Readers and converters for foreign checkpoint formats, one module per format."""
