"""The host interface: command/response protocol and the host bridge."""
