"""Herald's domain: pure values and rules, no I/O."""
