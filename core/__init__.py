"""What every part of the project shares: settings, errors, files written whole, the token-shard format."""
