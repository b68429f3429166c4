"""Shared plumbing for every Pantree service: configuration, logging, errors, gRPC bootstrap."""

__version__ = "0.1.0"
