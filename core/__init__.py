"""Shared kernel: settings, data models, protocols, LLM client, embedder, errors."""
