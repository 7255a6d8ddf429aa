"""``python -m agkit train CONFIG`` (also what ``torchrun -m agkit`` runs): see agkit.cli."""

import sys

from agkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
