"""HTTP routes, one module per endpoint family: parse, call a handler, respond."""
