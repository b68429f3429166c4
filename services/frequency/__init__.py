"""Frequency step: repurchase rhythms of every product a shopper buys."""
