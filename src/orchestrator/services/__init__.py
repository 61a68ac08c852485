"""The gRPC layer: one module per service. Thin: decode the request, call the
engine, encode the answer; errors are mapped in `errors`."""
