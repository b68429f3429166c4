"""`python -m services.simulation`: this step alone, configured by the environment."""

from services.cli import serve_main

serve_main("simulation")
