"""Device agents: one module per device kind behind the Agent protocol (agents.base)."""
