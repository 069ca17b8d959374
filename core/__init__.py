"""What every part of the project shares: settings, errors, files written whole, the token-shard
format, processes and signals, what the terminal shows, a command's own temporary directory."""
