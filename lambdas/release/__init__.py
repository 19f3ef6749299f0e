"""Release step of the canary release state machine."""
