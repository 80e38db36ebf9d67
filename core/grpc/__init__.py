"""The gRPC face: the interceptor (gate), wire mapping, one servicer module per proto service,
and the worker's server bootstrap. The only package that imports *_pb2 besides the CLI."""
