"""Releases: turning a finished training run into an embedded model in assets/, with its manifest (sha256, command,
hardware, time, figures) and sample grids.
"""
