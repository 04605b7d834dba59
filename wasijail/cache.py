"""The compiled-module cache: artifacts a locked-down child compiled, kept by the supervisor.

An entry is keyed by the SHA-256 of the module's bytes, the wasmtime version
and the engine settings, so an artifact is only ever reused for the very same
module on the very same engine. Each entry carries an HMAC-SHA256 made with a
secret key that lives only in the cache folder (mode 0600): an artifact that
the supervisor did not store itself — copied in, edited, truncated — fails
the check, is deleted, and the module is compiled again. Artifacts are loaded
only inside locked-down children (see SECURITY.md for the trust model).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_BYTES = 1 << 30
_KEY_FILE = "key"
_SUFFIX = ".cwasm"
_MAC_SIZE = 32


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasijail"


def engine_fingerprint(*, fuel: bool) -> str:
    """What, besides the module, decides the compiled code (keep in step with runner.make_engine)."""
    from importlib import metadata  # only when a cache is in use: it is slow to import

    version = metadata.version("wasmtime")
    return f"wasmtime-{version};features=bulk,multivalue,reftypes,simd,tailcall,exceptions;" \
           f"memory_may_move=0;fuel={int(fuel)}"


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int
    size: int
    max_size: int


class ModuleCache:
    """A folder of verified artifacts with a size cap (least recently used go first)."""

    def __init__(self, path: Path | str | None = None, *, max_size: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path) if path is not None else default_cache_dir()
        self.max_size = max_size
        self.refused = 0  # entries that failed verification (tampered or foreign)
        self._secret: bytes | None = None

    def _ensure(self) -> bytes:
        if self._secret is None:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.path, 0o700)
            key_path = self.path / _KEY_FILE
            if not key_path.exists():
                # Written whole under a private name, then linked into place: a second
                # run starting at the same moment sees no key or all of it, never half.
                secret = secrets.token_bytes(32)
                tmp = self.path / f"{_KEY_FILE}.{secrets.token_hex(8)}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(secret)
                try:
                    os.link(tmp, key_path)
                except FileExistsError:
                    pass  # another run won: use its key
                finally:
                    os.unlink(tmp)
            self._secret = key_path.read_bytes()
            if len(self._secret) != 32:
                raise OSError(f"{key_path}: not a wasijail cache key")
        return self._secret

    @staticmethod
    def key(module: bytes, fingerprint: str) -> str:
        return hashlib.sha256(hashlib.sha256(module).digest() + fingerprint.encode()).hexdigest()

    def _mac(self, key: str, artifact: bytes) -> bytes:
        return hmac.new(self._ensure(), key.encode() + b"\0" + artifact, hashlib.sha256).digest()

    def load(self, key: str) -> bytes | None:
        """The artifact stored under `key`, or None when absent or not verifiably ours."""
        entry = self.path / (key + _SUFFIX)
        try:
            data = entry.read_bytes()
        except FileNotFoundError:
            return None
        artifact, mac = data[:-_MAC_SIZE], data[-_MAC_SIZE:]
        if len(data) <= _MAC_SIZE or not hmac.compare_digest(mac, self._mac(key, artifact)):
            self.refused += 1
            entry.unlink(missing_ok=True)
            return None
        os.utime(entry)  # recently used: evicted last
        return artifact

    def store(self, key: str, artifact: bytes) -> None:
        mac = self._mac(key, artifact)
        entry = self.path / (key + _SUFFIX)
        tmp = entry.with_suffix(f".tmp{secrets.token_hex(8)}")  # unique: stores may overlap
        with open(tmp, "wb") as f:
            f.write(artifact + mac)
        os.replace(tmp, entry)  # readers see the whole entry or none
        self._evict()

    def _entries(self) -> list[os.DirEntry]:
        try:
            return [e for e in os.scandir(self.path) if e.name.endswith(_SUFFIX)]
        except FileNotFoundError:
            return []

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda e: e.stat().st_mtime_ns)
        total = sum(e.stat().st_size for e in entries)
        while entries and total > self.max_size:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            os.unlink(oldest.path)

    def info(self) -> CacheInfo:
        entries = self._entries()
        return CacheInfo(self.path, len(entries), sum(e.stat().st_size for e in entries), self.max_size)

    def clear(self) -> int:
        entries = self._entries()
        for entry in entries:
            os.unlink(entry.path)
        return len(entries)
