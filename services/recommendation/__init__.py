"""Recommendation step: ranks analysed products and turns the best into Subscribe & Save offers."""
