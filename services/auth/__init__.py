"""The auth service: tokens and users (see protos/ferry/v1/auth.proto)."""
