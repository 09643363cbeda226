"""The web console's built files (console/src, bundled by `make console`), served by Envoy."""
