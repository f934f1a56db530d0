"""Plugin machinery: the hook specifications, entry-point discovery with failure isolation,
the registrar handed to registration hooks, and lazy ``"module:attribute"`` references."""
