"""The auth service's route table: thin handlers that parse, call the domain, respond.

Every service also serves /healthz, /readyz, /metrics, /openapi.json and /internal/whoami
(argus_shared.runner). The service's own routes arrive with its issue.
"""

from __future__ import annotations

from argus_shared.routing import Route

ROUTES: list[Route] = []
