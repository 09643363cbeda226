"""Test doubles that speak the real protocols: servers on real sockets."""
