"""The editor's non-visual parts: the engine bridge, the document and its undo commands, projects, exports, the live
preview, settings and input habits.
"""
