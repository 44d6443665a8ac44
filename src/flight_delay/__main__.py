"""Lets `python -m flight_delay` run the command line."""

from flight_delay.cli import main

main()
