"""``python -m grlib.report SPEC.yaml [...]``: the same as ``grlib report``."""
import sys

from .cli import main

sys.exit(main())
