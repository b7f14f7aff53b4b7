"""Framework-neutral model definitions; importing this package fills the registry."""
from liif.models import edsr, mlp, rdn, liif, metasr, lte  # noqa: F401
