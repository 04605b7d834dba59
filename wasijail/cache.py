"""The compiled-module cache: artifacts a locked-down child compiled, kept by the supervisor.

An entry is keyed by the SHA-256 of the module's bytes, the wasmtime version
and the engine settings, so an artifact is only ever reused for the very same
module on the very same engine.

Trust is checked once, by identity, not by reading every byte on every run:
when the supervisor stores an artifact it writes it read-only into the
cache folder (mode 0700) and then seals the file's identity — device, inode,
size, mtime and ctime, as fstat reports them after the file is in place —
with an HMAC-SHA256 made with a secret key that lives only in the cache
folder (mode 0600). A later run opens the artifact, compares its fstat with
the sealed identity and hands the open descriptor to the child, which maps
it. Any change to the file after it was sealed — edited, truncated, replaced,
copied in from elsewhere — changes its inode or its ctime (which no
unprivileged process can set back), the seal no longer matches, and the
entry is deleted and the module compiled again. Artifacts are loaded only
inside locked-down children (see SECURITY.md for the trust model).

The module's own digest is found the same way: a sealed record maps a module
file's identity to the SHA-256 of its bytes, so an unchanged 100 MB module is
not read and hashed on every run.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import final

from .nofollow import NEW_FILE, open_dir, read_regular, write_beneath
from .engine import EngineOptions

DEFAULT_MAX_BYTES = 1 << 30
_KEY_FILE = "key"
_SUFFIX = ".cwasm"
_SEAL = ".seal"  # beside each artifact: its sealed identity; its mtime orders eviction
_MODULES = "modules"  # sealed records: module file identity -> digest of its bytes
_MAX_MODULE_RECORDS = 4096
_ARTIFACT_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW  # how an artifact is opened: never through a link
_MAX_KNOWN = 4096  # verified digests and seals this process remembers (oldest forgotten first)
_MAC_SIZE = 32


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasijail"


@functools.cache
def _wasmtime_version() -> str:
    """wasmtime-py's version, from its dist-info folder's name: importing importlib.metadata
    (or wasmtime itself) would cost every CLI run tens of milliseconds. Looked up once per
    process (~1.5 ms, once per run before): the fork server imported wasmtime once too."""
    from importlib.util import find_spec

    spec = find_spec("wasmtime")
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent.parent
        found = [p.name[len("wasmtime-"):-len(".dist-info")] for p in site.glob("wasmtime-*.dist-info")]
        if len(found) == 1:
            return found[0]
    from importlib import metadata  # several or none: ask the slow, thorough way

    return metadata.version("wasmtime")


def engine_fingerprint(*, fuel: bool, options: EngineOptions = EngineOptions()) -> str:
    """What, besides the module, decides the compiled code (EngineOptions.make_config's settings)."""
    return f"wasmtime-{_wasmtime_version()};{options.fingerprint()};memory_may_move=0;fuel={int(fuel)}"


def file_identity(st: os.stat_result) -> bytes:
    """What changes whenever a file's content can have changed (ctime cannot be set back)."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}".encode()


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    entries: int
    size: int
    max_size: int


@final
class CachedArtifact:
    """An open, verified artifact: the descriptor goes to the child, which maps it."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ModuleCache:
    """A folder of sealed artifacts with a size cap (least recently used go first)."""

    def __init__(self, path: Path | str | None = None, *, max_size: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path) if path is not None else default_cache_dir()
        self.max_size = max_size
        self.refused = 0  # entries that failed verification (tampered or foreign)
        self._secret: bytes | None = None
        # What this process has verified already (`open_known`): module identity -> digest,
        # cache key -> the artifact's sealed identity.
        self._digests: dict[bytes, bytes] = {}
        self._seals: dict[str, bytes] = {}

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
                fd = os.open(tmp, NEW_FILE, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(secret)
                try:
                    os.link(tmp, key_path)
                except FileExistsError:
                    pass  # another run won: use its key
                finally:
                    os.unlink(tmp)
            self._secret = read_regular(key_path)  # a link planted at the key's name is refused
            if len(self._secret) != 32:
                raise OSError(f"{key_path}: not a wasijail cache key")
        return self._secret

    @staticmethod
    def key(module: bytes, fingerprint: str) -> str:
        return ModuleCache.key_of_digest(hashlib.sha256(module).digest(), fingerprint)

    @staticmethod
    def key_of_digest(digest: bytes, fingerprint: str) -> str:
        return hashlib.sha256(digest + fingerprint.encode()).hexdigest()

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._ensure(), b"\0".join(parts), hashlib.sha256).digest()

    def _write_file(self, path: Path, data: bytes, mode: int) -> None:
        # A fresh name made with O_EXCL|O_NOFOLLOW beneath the folder's fd, renamed over `path`:
        # readers see the whole file or none, and a link planted at its name is replaced, never
        # written through.
        folder = open_dir(path.parent)
        try:
            write_beneath(folder, path.name, data, mode)
        finally:
            os.close(folder)

    def _read_sealed(self, path: Path, *context: bytes) -> bytes | None:
        """The payload of a sealed record, or None when absent or not ours."""
        try:
            data = read_regular(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:  # a link or anything but a regular file: not a record this cache wrote
            return None
        payload, mac = data[:-_MAC_SIZE], data[-_MAC_SIZE:]
        if len(data) <= _MAC_SIZE or not hmac.compare_digest(mac, self._mac(*context, payload)):
            return None
        return payload

    # ---- module digests

    def module_key(self, fd: int, fingerprint: str) -> str:
        """The cache key of the module open at `fd`: from its sealed identity record, or by
        hashing its bytes (once per version of the file)."""
        ident = file_identity(os.fstat(fd))
        record = self.path / _MODULES / hashlib.sha256(ident).hexdigest()
        digest = self._read_sealed(record, b"module", ident)
        if digest is None or len(digest) != 32:
            digest = _hash_fd(fd)
            if file_identity(os.fstat(fd)) == ident:  # unchanged while we read it
                try:
                    self._ensure()
                    record.parent.mkdir(mode=0o700, exist_ok=True)
                    self._write_file(record, digest + self._mac(b"module", ident, digest), 0o600)
                    self._trim_module_records()
                except OSError:
                    pass  # the next run hashes again
        _remember(self._digests, ident, digest)
        return self.key_of_digest(digest, fingerprint)

    def _trim_module_records(self) -> None:
        try:
            records = list(os.scandir(self.path / _MODULES))
        except FileNotFoundError:
            return
        if len(records) > _MAX_MODULE_RECORDS:
            records.sort(key=lambda e: e.stat().st_mtime_ns)
            for old in records[:len(records) - _MAX_MODULE_RECORDS]:
                _unlink(old.path)

    # ---- artifacts

    def open(self, key: str) -> CachedArtifact | None:
        """The artifact stored under `key`, open for the child to map; None when absent or
        not verifiably the file this cache stored (then it is deleted)."""
        entry = self.path / (key + _SUFFIX)
        seal = self.path / (key + _SEAL)
        try:
            fd = os.open(entry, _ARTIFACT_FLAGS)
        except FileNotFoundError:
            return None
        except OSError:
            fd = -1  # a symlink or something else that is not ours
        if fd >= 0:
            expected = self._read_sealed(seal, b"artifact", key.encode())
            artifact = self._if_sealed(fd, key, expected)
            if artifact is not None:
                _remember(self._seals, key, expected)
                return artifact
        self.refused += 1
        _unlink(entry)
        _unlink(seal)
        return None

    def open_known(self, fd: int, fingerprint: str) -> tuple[str, CachedArtifact] | None:
        """`module_key` then `open`, answered from what this process verified before: the
        module open at `fd` has the identity whose digest it computed or read from a sealed
        record, and the artifact file still has the identity its seal held when `open`
        checked it. Both identities change with any change to the file (ctime cannot be set
        back), so this trusts exactly what the sealed records would: no record or seal is
        read, nothing hashed. None when anything is unknown or differs: then the full
        lookup decides (and refuses what it must)."""
        digest = self._digests.get(file_identity(os.fstat(fd)))
        if digest is None:
            return None
        key = self.key_of_digest(digest, fingerprint)
        sealed = self._seals.get(key)
        if sealed is None:
            return None
        try:
            artifact = os.open(self.path / (key + _SUFFIX), _ARTIFACT_FLAGS)
        except OSError:
            return None
        verified = self._if_sealed(artifact, key, sealed)
        return None if verified is None else (key, verified)

    def _if_sealed(self, fd: int, key: str, expected: bytes | None) -> CachedArtifact | None:
        """The artifact open at `fd` if it is a regular file with the sealed identity
        `expected` (its seal then marked recently used); else None, and `fd` closed."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or expected != file_identity(st):
            os.close(fd)
            return None
        try:
            # recently used: evicted last (the artifact's own times are sealed)
            os.utime(self.path / (key + _SEAL), follow_symlinks=False)
        except OSError:
            pass
        return CachedArtifact(fd, st.st_size)

    def store(self, key: str, artifact: bytes) -> None:
        self._ensure()
        entry = self.path / (key + _SUFFIX)
        self._write_file(entry, artifact, 0o400)
        fd = os.open(entry, _ARTIFACT_FLAGS)
        try:
            ident = file_identity(os.fstat(fd))  # after the rename: it may change ctime
        finally:
            os.close(fd)
        self._write_file(self.path / (key + _SEAL), ident + self._mac(b"artifact", key.encode(), ident), 0o600)
        self._evict()

    def _entries(self) -> list[os.DirEntry]:
        try:
            return [e for e in os.scandir(self.path) if e.name.endswith(_SUFFIX)]
        except FileNotFoundError:
            return []

    def _evict(self) -> None:
        def last_used(entry: os.DirEntry) -> int:
            try:
                return os.stat(entry.path[:-len(_SUFFIX)] + _SEAL).st_mtime_ns
            except FileNotFoundError:
                return 0

        entries = sorted(self._entries(), key=last_used)
        total = sum(e.stat().st_size for e in entries)
        while entries and total > self.max_size:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            _unlink(oldest.path)
            _unlink(oldest.path[:-len(_SUFFIX)] + _SEAL)

    def info(self) -> CacheInfo:
        entries = self._entries()
        return CacheInfo(self.path, len(entries), sum(e.stat().st_size for e in entries), self.max_size)

    def clear(self) -> int:
        entries = self._entries()
        for entry in entries:
            _unlink(entry.path)
            _unlink(entry.path[:-len(_SUFFIX)] + _SEAL)
        shutil.rmtree(self.path / _MODULES, ignore_errors=True)
        return len(entries)


def _remember(known: dict, key, value) -> None:
    known.pop(key, None)
    known[key] = value  # newest last
    if len(known) > _MAX_KNOWN:
        del known[next(iter(known))]


def _hash_fd(fd: int) -> bytes:
    digest, offset = hashlib.sha256(), 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.digest()


def _unlink(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
