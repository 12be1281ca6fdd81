"""``python -m orchestrator.cli``: the ``orchestrate`` command."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
