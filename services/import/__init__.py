"""The ImportService: the gRPC face of the merge engine (ferry.merge).

`import` is a Python keyword, so this package is only ever loaded by name through the
plugin registry (`ferry.services` entry point `import`); its modules import each other
relatively.
"""
