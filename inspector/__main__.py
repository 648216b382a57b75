"""``python -m inspector``: the ``rtinspect`` command."""

from .cli import main

main(prog_name="rtinspect")
