"""Protocol errors say whose fault it was (as h11 does)."""


class ProtocolError(Exception):
    """Base of protocol errors; `str()` is a one-line description."""


class LocalProtocolError(ProtocolError):
    """This side misused the connection (a bug in our shell code)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid: close that peer, never the whole process."""
