"""python -m numbench.cli …"""

from . import main

main(prog_name="numbench")
