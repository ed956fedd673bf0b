"""`podside lsp`: the backend the editor extension talks to (pygls over stdio).

`server` declares the commands and notifications (the target picker is `podside.kube`),
`launch` turns a `podside` launch configuration into a concrete debug configuration from
`lsp/launch_templates/`, and `sessions` keeps the sessions the backend owns.
"""
