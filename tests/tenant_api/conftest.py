from support.auth_service import make_auth_service  # noqa: F401 - fixtures
from support.suite import suite  # noqa: F401
