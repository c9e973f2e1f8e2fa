"""The `thinct` command line: a Typer app, its shared options and one module per command group."""
