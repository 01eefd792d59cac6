"""A worker that dies at once, as a broken image or a missing model would: it prints a line to
each stream and exits with code 3 before taking any job (a crash loop for the orchestrator)."""

import sys

print("loading model weights from /models/missing", flush=True)
print("FileNotFoundError: /models/missing (crash_on_start)", file=sys.stderr, flush=True)
sys.exit(3)
