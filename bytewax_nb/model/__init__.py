"""What a swarm is, as data: its declaration (bees, gateways, their options), the plan of
processes that runs it, the messages and errors that cross processes, the settings.

Pure: it runs in every process (kernel, command line, hub, replica, controller) and
imports only the standard library, never a socket, a web server or IPython.
"""
