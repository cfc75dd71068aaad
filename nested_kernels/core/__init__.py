"""Machinery shared by every op: argument checks, sequences, backends, custom-op registration."""
