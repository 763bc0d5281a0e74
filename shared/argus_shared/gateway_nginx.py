"""nginx configurations rendered from the gateway table (`argus_shared.gateway_rules`).

Two forms, each committed where it is used and compared with a fresh render by
`tests/test_deploy.py`:

- `compose`: `deploy/nginx/argus.conf`, the server the `nginx` image loads from `conf.d/`
  (inside its `http {}`), upstreams at the compose service names;
- `k8s`: `deploy/k8s/base/gateway.nginx.conf`, a whole `nginx.conf` for the gateway Deployment
  (unprivileged, read-only root: pid and temp paths relative to `-p /tmp/`), upstreams at the
  Kubernetes Service names, and the client address taken from the ingress controller's
  `X-Forwarded-For` (realip, from `trusted_proxies` only).

Both route with one `map` over `$request_uri` (the raw target: nginx's decoded `$uri` is never
consulted), whose lines are the table's rules in order; `proxy_pass` with a variable sends the
upstream the rest of the raw target unchanged.

`/openapi.json` is the gateway's own: the file `argus openapi` renders (`deploy/openapi.json`,
every service's document in one), read from `NginxForm.openapi_file` in the container.

    argus gateway render compose > deploy/nginx/argus.conf
    argus gateway render k8s > deploy/k8s/base/gateway.nginx.conf
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from argus_shared.gateway_rules import (
    CONNECT_TIMEOUT_SECONDS,
    GATEWAY,
    HEALTH_BODY,
    IDLE_TIMEOUT_SECONDS,
    LONG_IDLE_TIMEOUT_SECONDS,
    NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    UNAVAILABLE,
    GatewayRules,
    problem_body,
)


@dataclass(frozen=True)
class NginxForm:
    name: str
    path: str  # where the render is committed, from the repository root
    standalone: bool  # a whole nginx.conf, or a file included inside the image's http {}
    listen: str
    trusted_proxies: tuple[str, ...]  # peers whose X-Forwarded-For names the client
    openapi_file: str  # where the container has deploy/openapi.json (the gateway's document)


FORMS: Mapping[str, NginxForm] = {
    "compose": NginxForm("compose", "deploy/nginx/argus.conf", False, "8080", (),
                         "/etc/nginx/argus/openapi.json"),
    # the ingress controller's pods; the services' ARGUS_TRUSTED_PROXIES in the base is the same
    "k8s": NginxForm("k8s", "deploy/k8s/base/gateway.nginx.conf", True, "8080", ("10.0.0.0/8",),
                     "/etc/argus-gateway/openapi.json"),
}
# internal locations, reached only through the table's `local` rules (by rule name)
HEALTH_LOCATION = "/.argus-gateway/healthz"
OPENAPI_LOCATION = "/.argus-gateway/openapi.json"
STREAM_LOCATION = "/.argus-gateway/stream"  # long-lived routes (event streams)
LOCAL_LOCATIONS = {"health": HEALTH_LOCATION, "openapi": OPENAPI_LOCATION}
CARRIED = {
    "client-address": "$remote_addr",
    "scheme": "$scheme",
    "host": "$http_host",
    "request-id": "$argus_request_id",
}
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def quote(text: str) -> str:
    """`text` as one nginx string token (nginx reads `\\\\` and `\\"` back as `\\` and `"`)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(rule_name: str) -> str:
    return f"!{rule_name}"


def render(
    form: str,
    rules: GatewayRules = GATEWAY,
    *,
    upstreams: Mapping[str, str] | None = None,
    listen: str | None = None,
    trusted_proxies: Sequence[str] | None = None,
    openapi_file: str | None = None,
) -> str:
    """The configuration of one form. `upstreams` (service -> host:port), `listen` and
    `openapi_file` default to the deployment's; a test points them at loopback and a file of
    its own."""
    spec = FORMS[form]
    addresses = {s.name: f"{s.name}:{s.port}" for s in rules.services} | dict(upstreams or {})
    trusted = tuple(spec.trusted_proxies if trusted_proxies is None else trusted_proxies)
    http = _http(rules, addresses, listen or spec.listen, trusted, spec.standalone,
                 openapi_file or spec.openapi_file)
    head = [
        f"# Rendered by `argus gateway render {form}` from argus_shared/gateway_rules.py: do not",
        "# edit (tests/test_deploy.py compares this file with a fresh render). The same table",
        "# drives `argus up`'s gateway; tests/shared/test_gateway_parity.py sends one set of",
        "# requests to all three and compares what they answer and what reaches the services.",
    ]
    if not spec.standalone:
        return "\n".join([*head, *http]) + "\n"
    main = [
        *head,
        "# Run as: nginx -p /tmp/ -e stderr -c <this file> (any user; writes only under -p).",
        "daemon off;",
        "worker_processes 2;  # not one per node core: the pod has a memory limit",
        "pid nginx.pid;",
        "pcre_jit on;",
        "error_log stderr notice;",
        "events { worker_connections 1024; }",
        "",
        "http {",
        *(f"    {line}" if line else "" for line in http),
        "}",
    ]
    return "\n".join(main) + "\n"


def _http(
    rules: GatewayRules, addresses: Mapping[str, str], listen: str, trusted: tuple[str, ...],
    standalone: bool, openapi_file: str,
) -> list[str]:
    lines: list[str] = []
    if standalone:
        lines += ["# temporary files under the prefix (-p): nothing else is written"]
        lines += [f"{name}_temp_path {name};" for name in TEMP_PATHS]
        lines += [""]
    if trusted:
        lines += ["# the client is who the ingress controller says it is, and no one else"]
        lines += [f"set_real_ip_from {cidr};" for cidr in trusted]
        lines += ["real_ip_header X-Forwarded-For;", "real_ip_recursive on;", ""]
    lines += [
        "log_format argus_gateway escape=json '{\"time\":\"$time_iso8601\",\"client\":"
        "\"$remote_addr\",\"method\":\"$request_method\",\"path\":\"$argus_log_path\","
        "\"status\":$status,\"bytes\":$body_bytes_sent,\"seconds\":$request_time,"
        "\"upstream\":\"$upstream_addr\",\"request_id\":\"$argus_request_id\"}';",
        "",
        "# The table's rules over the raw request target, in order: the first match decides.",
        "map $request_uri $argus_route {",
    ]
    for rule in rules.rules:
        value = f"{rule.service}$1" if rule.action == "route" else _value(rule.name)
        lines.append(f"    {quote('~' + rule.pattern)} {quote(value)};")
    lines += [
        f"    default {quote(_value(NOT_FOUND.name))};",
        "}",
        "map $argus_route $argus_service { \"~^([a-z0-9-]+)/\" $1; default \"\"; }",
        *_long_lived_map(rules),
        "map $request_uri $argus_log_path { \"~^([^?]*)\" $1; }",
        "map $http_x_request_id $argus_request_id {",
        f"    {quote('~' + rules.request_id)} $http_x_request_id;",
        "    default $request_id;",
        "}",
        "",
    ]
    lines += [
        f"upstream {s.name} {{ server {addresses[s.name]}; keepalive 32; }}"
        for s in rules.services
    ]
    lines += [
        "",
        "server {",
        f"    listen {listen};",
        "    server_tokens off;",
        "    access_log /dev/stdout argus_gateway;",
        "    default_type application/problem+json;",
        f"    client_max_body_size {rules.max_body_bytes};",
        "    ignore_invalid_headers on;     # a header named X_User_Token is dropped too",
        "    underscores_in_headers off;",
        "    proxy_request_buffering off;   # stream uploads",
        "    proxy_buffering off;           # stream downloads and exports",
        "    proxy_http_version 1.1;",
        f"    proxy_connect_timeout {CONNECT_TIMEOUT_SECONDS}s;",
        f"    proxy_read_timeout {IDLE_TIMEOUT_SECONDS}s;",
        f"    proxy_send_timeout {IDLE_TIMEOUT_SECONDS}s;",
        '    proxy_set_header Connection "";',
    ]
    carried = {name.lower() for name, _ in rules.set_headers}
    lines += [
        f'    proxy_set_header {name} "";'
        for name in rules.stripped_headers if name.lower() not in carried
    ]
    lines += [f"    proxy_set_header {name} {CARRIED[what]};" for name, what in rules.set_headers]
    lines += [
        "    error_page 413 @too_large;",
        "    error_page 502 504 @unavailable;",
        "",
    ]
    for rule in rules.rules:
        if rule.action == "refuse":
            lines.append(f"    if ($argus_route = {quote(_value(rule.name))}) "
                         f"{{ return {rule.status} {quote(rule.problem())}; }}")
        elif rule.action == "local":
            lines.append(f"    if ($argus_route = {quote(_value(rule.name))}) "
                         f"{{ rewrite ^ {LOCAL_LOCATIONS[rule.name]} last; }}")
    lines += [
        f"    if ($argus_route = {quote(_value(NOT_FOUND.name))}) "
        f"{{ return {NOT_FOUND.status} {quote(NOT_FOUND.problem())}; }}",
        f"    if ($argus_long_lived) {{ rewrite ^ {STREAM_LOCATION} last; }}",
        "",
        "    location / { proxy_pass http://$argus_route; }",
        f"    location = {STREAM_LOCATION} {{",
        "        internal;",
        "        proxy_buffering off;       # every event as it is written",
        "        proxy_cache off;",
        f"        proxy_read_timeout {LONG_IDLE_TIMEOUT_SECONDS}s;",
        f"        proxy_send_timeout {LONG_IDLE_TIMEOUT_SECONDS}s;",
        "        proxy_pass http://$argus_route;",
        "    }",
        f"    location = {HEALTH_LOCATION} {{",
        "        internal;",
        "        default_type application/json;",
        f"        return 200 {quote(HEALTH_BODY)};",
        "    }",
        *_openapi_location(openapi_file),
        f"    location @too_large {{ return {TOO_LARGE[0]} {quote(problem_body(*TOO_LARGE))}; }}",
        f"    location @unavailable {{ return {UNAVAILABLE[0]} "
        f"{quote(problem_body(*UNAVAILABLE, '$argus_service is not answering'))}; }}",
        "}",
    ]
    return lines


def _long_lived_map(rules: GatewayRules) -> list[str]:
    """`$argus_long_lived`: 1 for a target a long-lived route's pattern matches. Checked after
    every refusal and local rule, so only a target that rule decides gets there."""
    lines = ["map $request_uri $argus_long_lived {"]
    lines += [f"    {quote('~' + rule.pattern)} 1;" for rule in rules.rules
              if rule.action == "route" and rule.long_lived]
    return [*lines, '    default "";', "}"]


def _openapi_location(openapi_file: str) -> list[str]:
    """The gateway's document, a file: GET and HEAD only, as JSON whatever the image's MIME
    table says."""
    return [
        f"    location = {OPENAPI_LOCATION} {{",
        "        internal;",
        "        if ($request_method !~ ^(GET|HEAD)$) {",
        '            add_header Allow "GET, HEAD" always;',
        f"            return {NOT_ALLOWED[0]} {quote(problem_body(*NOT_ALLOWED))};",
        "        }",
        "        types { }",
        "        default_type application/json;",
        f"        alias {openapi_file};",
        "    }",
    ]
