"""``python -m rankstack`` runs the CLI (the same as the ``rankstack`` command)."""

import sys

from rankstack.cli import main

sys.exit(main())
