"""The editor's panels: one widget per concern, each bound to the document."""
