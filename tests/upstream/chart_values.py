"""Reading Helm values as the upstream charts' config files do (shared by the builders here)."""


def get(values, dotted, default=None):
    """The value at `a.b.c`, or `default` where any part is missing or null (as the charts'
    get_property treats them)."""
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return default
        node = node[part]
    return node
