"""Generated from proto/flowport/v1 by `make generate`: never edit by hand."""
