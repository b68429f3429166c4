"""Simulation step: turns a seed purchase and an archetype into months of shopping history."""
