"""``python -m demo_server``: the ``demo-server`` command."""

from demo_server.cli import main

if __name__ == "__main__":
    main(prog_name="python -m demo_server")
