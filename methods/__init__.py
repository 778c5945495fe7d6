"""Composition methods: each file registers one method by name (see `methods.registry`)."""
