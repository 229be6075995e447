"""The command line: `negspace train | evaluate | recommend | export | grid | tune | data | serve`."""

from negspace.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
