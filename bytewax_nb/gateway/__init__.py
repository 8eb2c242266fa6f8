"""The HTTP gateway process."""
