"""What a recipe, a checkpoint or a stored run may make the lab import (see `imports`)."""

from nde_lab.safety.imports import (
    ALLOW_ENV,
    DEFAULT_ALLOWED,
    ImportNotAllowedError,
    allow_imports,
    allowed_prefixes,
    enforce_import_policy,
    import_policy,
)

__all__ = [
    "ALLOW_ENV",
    "DEFAULT_ALLOWED",
    "ImportNotAllowedError",
    "allow_imports",
    "allowed_prefixes",
    "enforce_import_policy",
    "import_policy",
]
