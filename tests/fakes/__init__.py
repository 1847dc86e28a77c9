"""Fakes at our own seams: the tests' upstream, webhook signing. Never imported by samops."""
