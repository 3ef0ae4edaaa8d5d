"""Policies: built-ins (``off``, ``constant``, ``ftsts``) and trained bundles (numpy inference)."""
