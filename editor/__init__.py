"""The face editor GUI (PySide6): windows, panels, undo commands; talks to the engine through its public API."""
