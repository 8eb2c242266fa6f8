"""Launchers: how a replica or hub process comes to life on this machine (a subprocess,
a container), which runtime "auto" means, and the images bee containers run.

Runs in the owner. Imports `model` and `bus`; docker only where a container is made.
"""
