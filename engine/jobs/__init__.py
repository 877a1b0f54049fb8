"""Every unit of work the engine worker runs for the editor and the command line: render, invert, translate, image-to-
image samples, exports and batches.
"""
