"""Files written so that a kill mid-write keeps the previous one, file fingerprints, and telling URIs from paths."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

# a scheme and ":/": s3://b/x, and s3:/b/x as pathlib spells it; never a Windows drive (C:/), one letter
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def atomic_write_text(path: Path, text: str) -> Path:
    """Temp file + rename: a kill mid-write leaves any previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, newline="") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)
    return path


def is_remote(location: str | Path) -> bool:
    """An object-store or web URI (s3://, gs://, https://, models:/...); `file://` and plain paths are local."""
    text = str(location)
    return bool(_URI.match(text)) and not text.startswith("file:")


def file_hash(path: str | Path) -> str:
    """A short content fingerprint: the same file on every machine gives the same one."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
