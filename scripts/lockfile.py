"""The lock files under requirements/ and what they were made from.

pyproject.toml's bounds are the source of truth; requirements/run.txt (what
running the server needs) and requirements/dev.txt (that and the development
tools) pin one set of versions within them, with hashes, so every clone
installs the same thing. Each lock's first line records a digest of the
dependency tables it was compiled from, so a stale lock is found without a
network or a resolver:

    python scripts/lockfile.py check [MODE]   # exit 1 naming each stale lock
    python scripts/lockfile.py mark FILE...   # record the digest (scripts/lock)
    python scripts/lockfile.py stamp MODE...  # what a set-up of MODE finished now writes

Standard library only: scripts/setup runs it before .venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCKS = {"run": ROOT / "requirements" / "run.txt", "dev": ROOT / "requirements" / "dev.txt"}
MARK = "# pyproject.toml dependencies sha256:"


def digest() -> str:
    """A digest of what the locks are compiled from, and nothing else: editing
    the linters' settings in pyproject.toml leaves the locks current."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    tables = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    """The digest a lock was compiled from, None if it has none (or no file)."""
    try:
        first = lock.read_text(encoding="utf-8").partition("\n")[0]
    except FileNotFoundError:
        return None
    return first.removeprefix(MARK).strip() if first.startswith(MARK) else None


def stale() -> list[str]:
    """The locks that pyproject.toml has moved past, by mode."""
    current = digest()
    return [mode for mode, lock in LOCKS.items() if recorded(lock) != current]


def mark(paths: list[Path]) -> None:
    line = f"{MARK} {digest()}\n"
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if text.startswith(MARK):
            text = text.partition("\n")[2]
        path.write_text(line + text, encoding="utf-8")


def stamp(mode: str) -> str:
    """Changes whenever a set-up of `mode` would install something else: another
    lock, another pyproject.toml when the lock is stale, another Python."""
    lock = LOCKS[mode]
    source = lock.read_bytes() if mode not in stale() else f"unlocked {digest()}".encode()
    return hashlib.sha256(source + sys.version.encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="exit 1 if a lock is older than pyproject.toml")
    # No `choices`: with nargs="*", argparse checks the empty default against them too.
    checking.add_argument("modes", nargs="*", metavar="MODE", help="run, dev (default: both)")
    commands.add_parser("digest", help="print the digest of pyproject.toml's dependencies")
    marking = commands.add_parser("mark", help="record the digest in freshly compiled locks")
    marking.add_argument("paths", nargs="+", type=Path)
    stamping = commands.add_parser("stamp", help="print the stamp of a finished set-up, by mode")
    stamping.add_argument("modes", nargs="+", choices=sorted(LOCKS), metavar="MODE")
    args = parser.parse_args()
    if args.command == "check":
        if unknown := set(args.modes) - set(LOCKS):
            parser.error(f"no lock for {', '.join(sorted(unknown))}: expected run or dev")
        late = [mode for mode in stale() if mode in (args.modes or LOCKS)]
        for mode in late:
            print(
                f"{LOCKS[mode].relative_to(ROOT)} is older than pyproject.toml's dependencies:"
                " run `make lock`",
                file=sys.stderr,
            )
        return 1 if late else 0
    if args.command == "digest":
        print(digest())
    elif args.command == "mark":
        mark(args.paths)
    else:
        for mode in args.modes:
            print(stamp(mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
