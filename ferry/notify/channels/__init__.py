"""Built-in `ferry.channels` plugins: smtp, webhook and log (see base for the contract)."""
