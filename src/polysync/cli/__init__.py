"""The `polysync` command line (Typer + Rich): thin, it parses, calls services and renders."""
