"""`python -m magdi.cli` = `magdi`."""

from magdi.cli import app

app(prog_name="magdi")
