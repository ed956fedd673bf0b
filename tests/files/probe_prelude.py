"""The start of the Python probes the files tests run under podside: `attempt(name, call)`
records a call's result, or its errno's name, in `result`; `read(path)` reads a text file.
Each test appends its own attempts and prints `json.dumps(result)`."""

import textwrap

PRELUDE = textwrap.dedent(
    """
    import errno, hashlib, json, os, sys
    result = {}
    def attempt(name, function):
        try:
            result[name] = function()
        except OSError as error:
            result[name] = errno.errorcode[error.errno]
    def read(path):
        with open(path) as file:
            return file.read()
    """
)
