"""Helpers shared by the tests: database per test, server subprocess, gRPC client."""
