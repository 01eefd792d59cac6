"""Contract tests: every JobQueue and JobStore implementation must pass them unchanged."""
