"""What several commands share: writing their text to a file or to stdout."""

import sys
from pathlib import Path


def emit(text, path=None, what=""):
    """Write ``text`` to ``path`` (parent folders made; a note on stderr, with ``what``)
    or, without a path, to stdout."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        print(f"wrote {path}{f' ({what})' if what else ''}", file=sys.stderr)
    else:
        sys.stdout.write(text)
