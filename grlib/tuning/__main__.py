"""``python -m grlib.tuning [tune] [--port N] [--notebook PATH]``: the same as ``grlib tune``."""
import sys

from ..cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in the browser test
    argv = sys.argv[1:]
    sys.exit(main(argv if argv[:1] == ["tune"] else ["tune", *argv]))
