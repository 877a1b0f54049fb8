"""Dialogs and secondary windows: preferences, help, errors, the face picker, the flow layout and the compare-methods
window.
"""
