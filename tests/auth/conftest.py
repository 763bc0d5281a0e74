from support.auth_service import make_auth_service, service  # noqa: F401 - fixtures
