"""What every request passes through before its view: size bounds, access, signed URLs,
CORS, rate limits, public URLs, request ids and counters, generation-versioned URLs."""
