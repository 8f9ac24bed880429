"""Example third-party plugin for trl-plugins (used by the tests and shown in docs/plugins.md)."""
