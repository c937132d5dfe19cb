"""Server tests over real loopback sockets."""
