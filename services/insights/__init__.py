"""Insights step: categories, related products, suggested intervals and reasons for candidates."""
