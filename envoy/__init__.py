"""Envoy's config template and Lua filter: the package data `flowport.envoy_config`.

A package (this file) only so that an installed Flowport carries the files and reads them with
importlib.resources; nothing here is Python code to import."""
