"""Flowport: publish AI workflows as FlowAI- and LinkAI-compatible APIs."""
