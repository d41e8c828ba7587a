"""Shared fixtures: real services started once per session on free ports."""
