"""The framework: servers built from config, filters, health, reflection, typed clients."""
