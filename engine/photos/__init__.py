"""Photos: reading them (EXIF, colour modes, size limits), finding faces, aligning a face the way the model's training
faces were, and pasting an edit back.
"""
