"""``python -m mannequin`` runs the command line."""
import sys

from mannequin.cli import main

sys.exit(main())
