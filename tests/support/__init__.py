"""Test-only helpers: real peers (TLS terminator, faulty network) for the fault and security suites."""
