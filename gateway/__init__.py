"""The HTTP gateway: REST and tRPC-style routes built from the contract's descriptors,
file downloads and uploads, login, OpenAPI, and the Export Center page."""
