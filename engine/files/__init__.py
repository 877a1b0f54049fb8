"""Model and image files: format detection and loading, the project's own checkpoint format, PNG with parameters, the
safe unpickler, what written files say about paths.
"""
