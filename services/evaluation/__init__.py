"""Offline evaluation on real purchase data: the time-split protocol, metrics and methods."""
