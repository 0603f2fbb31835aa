"""The ``edge`` program: one root Typer app composed of each package's sub-app."""
