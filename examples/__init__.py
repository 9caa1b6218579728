"""Example modules for the repo-root engines.toml: fixed-seed random weights, no downloads."""
