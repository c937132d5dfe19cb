"""Production edges: TLS, PROXY, XCLIENT, timeouts, limits, shutdown, scale-out."""
