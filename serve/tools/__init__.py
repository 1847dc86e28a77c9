"""Tool executors: what runs when the model calls a tool."""
