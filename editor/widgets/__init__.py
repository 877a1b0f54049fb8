"""Reusable widgets: the canvas, the history strip, icons, image conversion, scrolling columns."""
