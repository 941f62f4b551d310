"""Logging set-up: human lines on stderr by default, JSON lines on request, and an optional
log file (append) that keeps INFO and up even when the terminal shows only warnings."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool = False, fmt: str = "text", log_file: Path | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):  # a second call (tests, embedding) replaces, not adds
        root.removeHandler(handler)
        handler.close()
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(formatter)
    root.addHandler(console)
    level = logging.DEBUG if verbose else logging.WARNING
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        file_handler.setFormatter(formatter if fmt == "json" else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file_handler)
        level = min(level, file_handler.level)
    root.setLevel(level)
    # libraries that chatter at INFO stay at WARNING unless asked
    for noisy in ("httpx", "urllib3", "filelock", "sentence_transformers", "datasets", "faiss",
                  "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
