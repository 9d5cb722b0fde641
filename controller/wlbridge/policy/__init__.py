"""Policies: read the model and a packet, return effects; never hold the core."""
