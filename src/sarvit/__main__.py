"""`python -m sarvit ...` (what `torchrun -m sarvit train ...` runs)."""
import sys

from .cli import main

sys.exit(main())
