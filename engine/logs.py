"""The log file: where it lives, and switching it on for a process (the editor and the command line do, at start).

Users see one sentence per problem; the full story (tracebacks, the job that failed) goes to
``<log folder>/face-editor.log``, rotated at 1 MB with three old files kept. The folder is ``FACE_EDITOR_LOG_DIR``
if set, else ``$XDG_STATE_HOME/face-editor/logs`` (``~/.local/state/face-editor/logs``). Nothing is written until
``setup_logging`` is called, so importing the engine never touches the disk. The command line also shows the log
on stderr (``log_to_stderr``): warnings by default, more with ``-v`` / ``-vv``, only errors with ``-q``.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOG_NAME = "face-editor.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"
_handler: logging.Handler | None = None
_stderr: logging.Handler | None = None


def log_dir() -> Path:
    """The folder the log file goes to (not created here)."""
    if os.environ.get("FACE_EDITOR_LOG_DIR"):
        return Path(os.environ["FACE_EDITOR_LOG_DIR"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "face-editor" / "logs"


def log_path() -> Path:
    """The current log file: the one ``setup_logging`` opened, else where it would go."""
    if isinstance(_handler, logging.FileHandler):
        return Path(_handler.baseFilename)
    return log_dir() / LOG_NAME


def setup_logging(folder: str | os.PathLike | None = None, *, level: int = logging.INFO) -> Path | None:
    """Send the ``engine`` and ``editor`` loggers to the rotating log file in ``folder`` (default ``log_dir()``).
    Idempotent: a second call moves the log to the new folder. Returns the file's path, or None when the folder
    cannot be written (the program then runs without a log file, which is not worth stopping for)."""
    global _handler
    path = Path(folder).expanduser() / LOG_NAME if folder is not None else log_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1 << 20, backupCount=3, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(_FORMAT))
    for name in ("engine", "editor"):
        logger = logging.getLogger(name)
        if _handler is not None:
            logger.removeHandler(_handler)
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or level, level))
    if _handler is not None:
        _handler.close()
    _handler = handler
    return path


class _StderrHandler(logging.Handler):
    """Log records as lines on the current ``sys.stderr`` (through tqdm, so that a progress bar stays whole);
    a record logged with ``extra={"stderr": False}`` goes to the file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "stderr", True) is not False and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the program
            self.handleError(record)


def log_to_stderr(*, verbose: int = 0, quiet: bool = False) -> logging.Handler:
    """Show the ``engine`` logger on stderr: WARNING and above, INFO with ``verbose`` 1, DEBUG with 2 or more,
    ERROR only when ``quiet``. Idempotent: a second call replaces the first's handler."""
    global _stderr
    level = logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING
    logger = logging.getLogger("engine")
    if _stderr is not None:
        logger.removeHandler(_stderr)
    _stderr = _StderrHandler(level)
    _stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(_stderr)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return _stderr
