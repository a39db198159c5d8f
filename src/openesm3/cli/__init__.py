"""The ``openesm3`` command line: thin wrappers that parse arguments and call library functions."""
