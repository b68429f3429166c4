"""`python -m gateway`: the gateway alone, configured by the environment."""

from services.cli import main

main(["serve", "gateway"])
