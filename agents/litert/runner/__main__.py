"""``python -m <the runner package> JOB.json RESULT.json``: one run of :func:`.worker.main`."""

import sys

from .worker import main

sys.exit(main(sys.argv[1:]))
