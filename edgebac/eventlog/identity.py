"""A node's ed25519 identity, kept in its data directory.

The key file holds one line, `ed25519:<64 hex digits of the seed>`, mode 0600. It is written
to a temporary file, synced and renamed, so a crash never leaves half a key behind.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from edgebac.errors import ConfigError, KeyFileError

KEY_FILE = "node.key"
_PREFIX = "ed25519:"


@dataclass(frozen=True)
class Identity:
    key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def node_id(self) -> str:
        """The node's id everywhere users see one: its public key in hex."""
        return self.public_key.hex()


def _parse(path: Path, text: str) -> SigningKey:
    line = text.strip()
    seed_hex = line.removeprefix(_PREFIX)
    if not line.startswith(_PREFIX) or len(seed_hex) != 64:
        raise KeyFileError(f"{path}: corrupt node key (expected '{_PREFIX}' and 64 hex digits)")
    try:
        return SigningKey(bytes.fromhex(seed_hex))
    except ValueError:
        raise KeyFileError(f"{path}: corrupt node key (not hexadecimal)") from None


def _write_new(path: Path) -> SigningKey:
    key = SigningKey.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"{_PREFIX}{bytes(key).hex()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def read_key_file(path: Path) -> Identity:
    """An ed25519 key file in the node key's format (an authority's key, say)."""
    try:
        return Identity(_parse(path, path.read_text(encoding="ascii")))
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: corrupt key (not text)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key: {exc.strerror}") from None


def create_key_file(path: Path) -> Identity:
    if path.exists():
        raise KeyFileError(f"{path} already exists; it is kept as it is")
    try:
        return Identity(_write_new(path))
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create the key: {exc.strerror}") from None


def load_or_create(data_dir: Path) -> Identity:
    """The node's identity: created on first start, the same one ever after."""
    path = data_dir / KEY_FILE
    try:
        if not path.exists():
            return Identity(_write_new(path))
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: corrupt node key (not text)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read or create the node key: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {path} is readable by other users; run: chmod 600 {path}", file=sys.stderr)
    return Identity(_parse(path, text))


def parse_public_key(text: str, flag: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{flag}: {text!r} is not a public key (64 hex digits)")
    return key
