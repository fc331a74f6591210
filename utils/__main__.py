"""``python -m utils``: the command line (utils/cli.py)."""
import sys

from .cli import main

sys.exit(main())
