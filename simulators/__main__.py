"""`python -m simulators`: the simulator on its own, with settings from the environment."""

from __future__ import annotations

import argparse
import sys

from core.settings import load_settings
from simulators.cli import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m simulators", description="Simulate CareWatch wristbands and bins over MQTT."
    )
    add_arguments(parser)
    sys.exit(main(parser.parse_args(), load_settings()))
