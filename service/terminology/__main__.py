"""python -m service.terminology harvest|generate|check (docs/terminology.md)."""

from __future__ import annotations

import sys

from .expand import generate
from .harvest import harvest


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "harvest":
        for path in harvest():
            print(f"wrote {path}")
        return 0
    if command in {"generate", "check"}:
        stale = generate(write=command == "generate")
        verb = "regenerated" if command == "generate" else "stale"
        for vs_id in stale:
            print(f"{verb}: ValueSet-{vs_id}.json")
        return 1 if stale and command == "check" else 0
    print("usage: python -m service.terminology harvest|generate|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
