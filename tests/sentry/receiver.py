#!/usr/bin/python3
"""Test Sentry receiver: a strict stand-in for Sentry's envelope endpoint.

usage: /usr/bin/python3 tests/sentry/receiver.py PORT KEY OUT_FILE

Listens on 127.0.0.1:PORT (threaded) and accepts

    POST /api/<project_id>/envelope/

It checks, following Sentry's developer documentation
(develop.sentry.dev/sdk/data-model/envelopes, envelope-items, event-payloads):

  * authentication: an X-Sentry-Auth header "Sentry k=v, k=v, ..." with
    sentry_version=7 and sentry_key equal to KEY; a "dsn" envelope header,
    when present, must name the same key and project (several forms of
    authentication must agree);
  * Content-Type: application/x-sentry-envelope (or one of the types the
    docs allow in its place, or none); Content-Encoding identity/gzip/deflate;
  * the envelope framing, strictly:  Envelope = Headers { "\\n" Item } [ "\\n" ]
    and Item = Headers "\\n" Payload. Headers are single-line compact JSON
    objects (valid UTF-8, no leading/trailing whitespace, no duplicate keys);
    an item header needs "type"; a "length" must be a non-negative integer,
    that many payload bytes must follow and be followed by "\\n" or the end;
    without "length" the payload runs to the next newline; nothing (not even
    whitespace) after the final newline;
  * event items: at most one per envelope, not together with a
    "transaction", and the envelope header must carry event_id;
  * the event payload against the documented event schema: event_id (32
    lowercase hex), timestamp (RFC 3339 string or number), platform (a known
    platform), sdk {name, version}, level (fatal/error/warning/info/debug),
    exception.values[] (type/value strings, mechanism.type, stacktrace.frames
    non-empty with filename, function and lineno >= 1 in every frame),
    message, request (method, absolute http(s) url, headers of strings),
    contexts (objects; contexts.trace with 32-hex trace_id and 16-hex
    span_id, not all zero), tags (string -> string, each under 200
    characters), environment and release (strings obeying Sentry's naming
    rules), and the types of the other documented attributes.

A valid envelope with an event is answered 200 {"id": "<event_id>"} and
appended to OUT_FILE as one JSON line:
    {"ok": true, "project": "42", "sentry_key": "...", "auth": {...},
     "envelope_header": {...}, "item_header": {...}, "event": {...},
     "warnings": [...]}
Anything invalid is answered 400 (403 for missing or wrong authentication)
and appended as {"ok": false, "error": "...", "path": ..., "body": ...}.
GET /stats answers {"valid": n, "invalid": n}. SIGTERM/SIGINT exit 0.
"""
import datetime
import gzip
import json
import re
import signal
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ENVELOPE_PATH = re.compile(r"^/api/([0-9]+)/envelope/$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UUID_ANY = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                     r"([Zz]|[+-]\d{2}:\d{2})$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")
HTTP_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# The "platform" values the event payload docs list as acceptable.
PLATFORMS = {"as3", "c", "cfml", "cocoa", "csharp", "elixir", "haskell", "go", "groovy", "java",
             "javascript", "native", "node", "objc", "other", "perl", "php", "python", "ruby"}
LEVELS = {"fatal", "error", "warning", "info", "debug"}
SPAN_STATUSES = {"ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded",
                 "not_found", "already_exists", "permission_denied", "resource_exhausted",
                 "failed_precondition", "aborted", "out_of_range", "unimplemented",
                 "internal_error", "unavailable", "data_loss", "unauthenticated"}
# Content types the envelope endpoint accepts (the docs: x-sentry-envelope,
# or these in its place to avoid CORS preflights; none implies the first).
CONTENT_TYPES = {"application/x-sentry-envelope", "text/plain", "multipart/form-data",
                 "application/x-www-form-urlencoded"}
MAX_BODY = 100 * 1024 * 1024
MAX_EVENT = 1024 * 1024


class Invalid(Exception):
    def __init__(self, msg, status=400):
        super().__init__(msg)
        self.status = status


# -- helpers ------------------------------------------------------------------

def _no_dupes(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise Invalid(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _reject_constant(name):
    raise Invalid(f"non-standard JSON constant {name}")


def loads_strict(raw: bytes, what: str):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"{what}: not UTF-8 ({e})")
    try:
        return json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_reject_constant)
    except Invalid as e:
        raise Invalid(f"{what}: {e}")
    except ValueError as e:
        raise Invalid(f"{what}: invalid JSON ({e}): {text[:200]!r}")


def parse_header(raw: bytes, what: str) -> dict:
    """A Headers line: compact single-line JSON object, no surrounding whitespace."""
    if raw != raw.strip(b" \t\r\n\f\v"):
        raise Invalid(f"{what}: leading or trailing whitespace (\\r before \\n included): {raw[:200]!r}")
    if not raw:
        raise Invalid(f"{what}: empty line where a JSON object header is required")
    obj = loads_strict(raw, what)
    if not isinstance(obj, dict):
        raise Invalid(f"{what}: not a JSON object: {raw[:200]!r}")
    return obj


def is_rfc3339(s) -> bool:
    m = isinstance(s, str) and RFC3339.match(s)
    if not m:
        return False
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    try:
        datetime.datetime(y, mo, d, h, mi, min(sec, 59))
    except ValueError:
        return False
    return h < 24 and mi < 60 and sec <= 60


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_auth(value: str) -> dict:
    """'Sentry sentry_version=7, sentry_client=x/1.0, sentry_key=abc' -> dict."""
    if not value.startswith("Sentry "):
        raise Invalid(f"X-Sentry-Auth does not start with 'Sentry ': {value!r}", 403)
    out = {}
    for part in value[len("Sentry "):].split(","):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise Invalid(f"X-Sentry-Auth: malformed element {part!r}", 403)
        k = k.strip()
        if k in out:
            raise Invalid(f"X-Sentry-Auth: {k} given twice", 403)
        out[k] = v.strip()
    return out


def parse_dsn(dsn: str):
    """{scheme}://{public_key}[:{secret}]@{host}[:port]{/path}/{project_id} -> (key, project)."""
    u = urlsplit(dsn)
    if u.scheme not in ("http", "https") or not u.username or not u.hostname:
        raise Invalid(f"envelope header dsn is not a DSN: {dsn!r}")
    project = u.path.rstrip("/").rsplit("/", 1)[-1]
    if not project.isdigit():
        raise Invalid(f"envelope header dsn has no numeric project id: {dsn!r}")
    return u.username, project


# -- envelope framing ---------------------------------------------------------

def parse_envelope(body: bytes):
    """Envelope = Headers { "\\n" Item } [ "\\n" ] ;  Item = Headers "\\n" Payload.
    Returns (envelope_header, [(item_header, payload_bytes)])."""
    nl = body.find(b"\n")
    head = body if nl < 0 else body[:nl]
    env_header = parse_header(head, "envelope header")
    pos = len(body) if nl < 0 else nl + 1
    items = []
    while pos < len(body):
        nl = body.find(b"\n", pos)
        if nl < 0:
            raise Invalid(f"item header at byte {pos} not followed by a newline (a payload must follow): "
                          f"{body[pos:pos + 200]!r}")
        ih = parse_header(body[pos:nl], f"item {len(items)} header")
        pos = nl + 1
        if "type" not in ih:
            raise Invalid(f"item {len(items)} header has no \"type\": {ih}")
        if not isinstance(ih["type"], str) or not ih["type"]:
            raise Invalid(f"item {len(items)} header \"type\" is not a non-empty string: {ih['type']!r}")
        if "length" in ih:
            n = ih["length"]
            if not is_int(n) or n < 0:
                raise Invalid(f"item {len(items)} header \"length\" is not a non-negative integer: {n!r}")
            if pos + n > len(body):
                raise Invalid(f"item {len(items)}: length {n} but only {len(body) - pos} bytes left "
                              f"(EOF before the payload was consumed)")
            payload = body[pos:pos + n]
            pos += n
            if pos < len(body):
                if body[pos:pos + 1] != b"\n":
                    raise Invalid(f"item {len(items)}: payload of length {n} followed by "
                                  f"{body[pos:pos + 20]!r}, not by a newline or the end")
                pos += 1
        else:
            nl = body.find(b"\n", pos)
            payload = body[pos:] if nl < 0 else body[pos:nl]
            pos = len(body) if nl < 0 else nl + 1
        items.append((ih, payload))
    return env_header, items


def check_envelope_header(h: dict, auth_key: str, project: str) -> None:
    if "event_id" in h and (not isinstance(h["event_id"], str) or not UUID_ANY.match(h["event_id"])):
        raise Invalid(f"envelope header event_id is not a UUID: {h['event_id']!r}")
    if "dsn" in h:
        if not isinstance(h["dsn"], str):
            raise Invalid(f"envelope header dsn is not a string: {h['dsn']!r}")
        key, proj = parse_dsn(h["dsn"])
        if key != auth_key or proj != project:
            raise Invalid(f"envelope header dsn (key {key!r}, project {proj}) does not match the "
                          f"X-Sentry-Auth key {auth_key!r} / URL project {project}", 403)
    if "sent_at" in h:
        s = h["sent_at"]
        if not is_rfc3339(s):
            raise Invalid(f"envelope header sent_at is not an RFC 3339 timestamp: {s!r}")
        if not (s.endswith(("Z", "z")) or s.endswith(("+00:00", "-00:00"))):
            raise Invalid(f"envelope header sent_at is not UTC: {s!r}")
    if "sdk" in h:
        check_sdk(h["sdk"], "envelope header sdk")


# -- event schema -------------------------------------------------------------

def check_sdk(sdk, where):
    if not isinstance(sdk, dict):
        raise Invalid(f"{where} is not an object")
    for k in ("name", "version"):
        if not isinstance(sdk.get(k), str) or not sdk.get(k):
            raise Invalid(f"{where}.{k} missing or not a non-empty string: {sdk.get(k)!r}")
    if not SEMVER.match(sdk["version"]):
        raise Invalid(f"{where}.version is not MAJOR.MINOR.PATCH: {sdk['version']!r}")
    for k in ("integrations", "features"):
        if k in sdk and not (isinstance(sdk[k], list) and all(isinstance(x, str) for x in sdk[k])):
            raise Invalid(f"{where}.{k} is not a list of strings")


def check_str(ev, key, where="event"):
    if key in ev and not isinstance(ev[key], str):
        raise Invalid(f"{where}.{key} is not a string: {ev[key]!r}")


def check_string_map(v, where, allow_pairs=True, max_len=None):
    if isinstance(v, dict):
        pairs = list(v.items())
    elif allow_pairs and isinstance(v, list):
        if not all(isinstance(p, list) and len(p) == 2 for p in v):
            raise Invalid(f"{where}: list form must hold [key, value] pairs")
        pairs = [tuple(p) for p in v]
    else:
        raise Invalid(f"{where} is not an object of strings: {v!r}")
    for k, val in pairs:
        if not isinstance(k, str) or not k:
            raise Invalid(f"{where}: key {k!r} is not a non-empty string")
        if not isinstance(val, str):
            raise Invalid(f"{where}[{k!r}] is not a string: {val!r}")
        if max_len is not None and (len(k) >= max_len or len(val) >= max_len):
            raise Invalid(f"{where}[{k!r}]: key or value not under {max_len} characters")
        if max_len is not None and ("\n" in k or "\n" in val):
            raise Invalid(f"{where}[{k!r}]: newline in a tag")


def check_frame(f, where):
    if not isinstance(f, dict):
        raise Invalid(f"{where} is not an object")
    for k in ("filename", "function"):
        if not isinstance(f.get(k), str) or not f.get(k):
            raise Invalid(f"{where}.{k} missing or not a non-empty string: {f.get(k)!r}")
    if not is_int(f.get("lineno")) or f["lineno"] < 1:
        raise Invalid(f"{where}.lineno missing or not an integer >= 1: {f.get('lineno')!r}")
    if "colno" in f and (not is_int(f["colno"]) or f["colno"] < 1):
        raise Invalid(f"{where}.colno is not an integer >= 1")
    for k in ("abs_path", "module", "package", "platform", "raw_function", "context_line",
              "instruction_addr", "symbol_addr", "image_addr"):
        check_str(f, k, where)
    for k in ("in_app", "stack_start"):
        if k in f and not isinstance(f[k], bool):
            raise Invalid(f"{where}.{k} is not a boolean")
    for k in ("pre_context", "post_context"):
        if k in f and not (isinstance(f[k], list) and all(isinstance(x, str) for x in f[k])):
            raise Invalid(f"{where}.{k} is not a list of strings")
    if "vars" in f and not isinstance(f["vars"], dict):
        raise Invalid(f"{where}.vars is not an object")


def check_stacktrace(st, where):
    if not isinstance(st, dict):
        raise Invalid(f"{where} is not an object")
    frames = st.get("frames")
    if not isinstance(frames, list) or not frames:
        raise Invalid(f"{where}.frames missing or empty (required, non-empty)")
    for i, f in enumerate(frames):
        check_frame(f, f"{where}.frames[{i}]")
    if "registers" in st and not isinstance(st["registers"], dict):
        raise Invalid(f"{where}.registers is not an object")


def check_exception(exc):
    values = exc.get("values") if isinstance(exc, dict) else exc
    if not isinstance(values, list) or not values:
        raise Invalid("event.exception must be {\"values\": [...]} (or a list) with at least one value")
    for i, v in enumerate(values):
        w = f"event.exception.values[{i}]"
        if not isinstance(v, dict):
            raise Invalid(f"{w} is not an object")
        if "type" not in v and "value" not in v:
            raise Invalid(f"{w} has neither type nor value")
        for k in ("type", "value", "module"):
            check_str(v, k, w)
        if "thread_id" in v and not isinstance(v["thread_id"], (int, str)):
            raise Invalid(f"{w}.thread_id is not an integer or string")
        if "mechanism" in v:
            m = v["mechanism"]
            if not isinstance(m, dict) or not isinstance(m.get("type"), str) or not m.get("type"):
                raise Invalid(f"{w}.mechanism needs a string type: {m!r}")
            for k in ("handled", "synthetic", "is_exception_group"):
                if k in m and not isinstance(m[k], bool):
                    raise Invalid(f"{w}.mechanism.{k} is not a boolean")
            for k in ("description", "help_link"):
                check_str(m, k, f"{w}.mechanism")
            for k in ("exception_id", "parent_id"):
                if k in m and not is_int(m[k]):
                    raise Invalid(f"{w}.mechanism.{k} is not an integer")
        if "stacktrace" in v:
            check_stacktrace(v["stacktrace"], f"{w}.stacktrace")


def check_message(m):
    if isinstance(m, str):
        return
    if not isinstance(m, dict):
        raise Invalid("event.message is not a string or an object")
    if "formatted" not in m and "message" not in m:
        raise Invalid("event.message has neither formatted nor message")
    for k in ("formatted", "message"):
        check_str(m, k, "event.message")
    if "params" in m and not isinstance(m["params"], (list, dict)):
        raise Invalid("event.message.params is not a list or an object")


def check_request(r):
    if not isinstance(r, dict):
        raise Invalid("event.request is not an object")
    meth = r.get("method")
    if not isinstance(meth, str) or not HTTP_TOKEN.match(meth) or meth != meth.upper():
        raise Invalid(f"event.request.method missing or not an upper-case HTTP method token: {meth!r}")
    url = r.get("url")
    if not isinstance(url, str):
        raise Invalid(f"event.request.url missing or not a string: {url!r}")
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise Invalid(f"event.request.url is not an absolute http(s) URL: {url!r}")
    if "headers" not in r:
        raise Invalid("event.request.headers missing")
    check_string_map(r["headers"], "event.request.headers")
    if "query_string" in r and not isinstance(r["query_string"], (str, dict, list)):
        raise Invalid("event.request.query_string is not a string, object or list")
    if "cookies" in r and not isinstance(r["cookies"], (str, dict, list)):
        raise Invalid("event.request.cookies is not a string, object or list")
    if "env" in r and not isinstance(r["env"], dict):
        raise Invalid("event.request.env is not an object")


def check_contexts(c):
    if not isinstance(c, dict):
        raise Invalid("event.contexts is not an object")
    for k, v in c.items():
        if not isinstance(v, dict):
            raise Invalid(f"event.contexts.{k} is not an object")
        check_str(v, "type", f"event.contexts.{k}")
    t = c.get("trace")
    if t is None:
        return
    if "type" in t and t["type"] != "trace":
        raise Invalid(f"event.contexts.trace.type is {t['type']!r}, not 'trace'")
    tid, sid = t.get("trace_id"), t.get("span_id")
    if not isinstance(tid, str) or not HEX32.match(tid) or tid == "0" * 32:
        raise Invalid(f"event.contexts.trace.trace_id is not 32 lowercase hex (non-zero): {tid!r}")
    if not isinstance(sid, str) or not HEX16.match(sid) or sid == "0" * 16:
        raise Invalid(f"event.contexts.trace.span_id is not 16 lowercase hex (non-zero): {sid!r}")
    if "parent_span_id" in t:
        p = t["parent_span_id"]
        if not isinstance(p, str) or not HEX16.match(p) or p == "0" * 16:
            raise Invalid(f"event.contexts.trace.parent_span_id is not 16 lowercase hex: {p!r}")
    check_str(t, "op", "event.contexts.trace")
    if "status" in t and t["status"] not in SPAN_STATUSES:
        raise Invalid(f"event.contexts.trace.status {t['status']!r} is not a span status")


def check_release(rel):
    if not isinstance(rel, str):
        raise Invalid(f"event.release is not a string: {rel!r}")
    if not rel or len(rel) > 200 or rel in (".", "..", " ") or any(ch in rel for ch in "\n\t/\\"):
        raise Invalid(f"event.release {rel!r} breaks Sentry's release naming rules")


def check_environment(env):
    if not isinstance(env, str):
        raise Invalid(f"event.environment is not a string: {env!r}")
    if not env or len(env) > 64 or env == "None" or any(ch in env for ch in "\n /"):
        raise Invalid(f"event.environment {env!r} breaks Sentry's environment naming rules")


def check_event(ev) -> None:
    if not isinstance(ev, dict):
        raise Invalid("event payload is not a JSON object")
    eid = ev.get("event_id")
    if not isinstance(eid, str) or not HEX32.match(eid):
        raise Invalid(f"event.event_id missing or not 32 lowercase hex characters: {eid!r}")
    ts = ev.get("timestamp")
    if not (is_rfc3339(ts) or is_num(ts)):
        raise Invalid(f"event.timestamp missing or neither RFC 3339 nor a number: {ts!r}")
    if ev.get("platform") not in PLATFORMS:
        raise Invalid(f"event.platform missing or not an acceptable platform: {ev.get('platform')!r}")
    if "sdk" not in ev:
        raise Invalid("event.sdk missing")
    check_sdk(ev["sdk"], "event.sdk")
    if "level" in ev and ev["level"] not in LEVELS:
        raise Invalid(f"event.level {ev['level']!r} not one of {sorted(LEVELS)}")
    for k in ("logger", "transaction", "server_name", "dist"):
        check_str(ev, k)
    if "release" in ev:
        check_release(ev["release"])
    if "environment" in ev:
        check_environment(ev["environment"])
    if "tags" in ev:
        check_string_map(ev["tags"], "event.tags", max_len=200)
    if "extra" in ev and not isinstance(ev["extra"], dict):
        raise Invalid("event.extra is not an object")
    if "modules" in ev:
        check_string_map(ev["modules"], "event.modules", allow_pairs=False)
    if "fingerprint" in ev and not (isinstance(ev["fingerprint"], list) and
                                    all(isinstance(x, str) for x in ev["fingerprint"])):
        raise Invalid("event.fingerprint is not a list of strings")
    if "exception" in ev:
        check_exception(ev["exception"])
    if "message" in ev:
        check_message(ev["message"])
    if "request" in ev:
        check_request(ev["request"])
    if "contexts" in ev:
        check_contexts(ev["contexts"])
    if "user" in ev and not isinstance(ev["user"], dict):
        raise Invalid("event.user is not an object")
    if "errors" in ev and not (isinstance(ev["errors"], list) and
                               all(isinstance(e, dict) and isinstance(e.get("type"), str)
                                   for e in ev["errors"])):
        raise Invalid("event.errors must be a list of objects with a string type")


# -- server -------------------------------------------------------------------

class Receiver:
    def __init__(self, key: str, out_path: str):
        self.key = key
        self.out = open(out_path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.valid = 0
        self.invalid = 0

    def record(self, obj: dict) -> None:
        with self.lock:
            if obj.get("ok"):
                self.valid += 1
            else:
                self.invalid += 1
            self.out.write(json.dumps(obj, sort_keys=True) + "\n")
            self.out.flush()


def make_handler(rx: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sentry-test-receiver/1"

        def log_message(self, fmt, *args):  # quiet: the out file is the record
            pass

        def _answer(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self) -> bytes:
            te = self.headers.get("Transfer-Encoding", "").lower()
            if te == "chunked":
                data = bytearray()
                while True:
                    line = self.rfile.readline(65537)
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(data)
                    data += self.rfile.read(size)
                    self.rfile.readline(3)
                    if len(data) > MAX_BODY:
                        raise Invalid("body too large")
            if te:
                raise Invalid(f"unsupported Transfer-Encoding {te!r}")
            cl = self.headers.get("Content-Length")
            if cl is None or not cl.isdigit():
                raise Invalid(f"no valid Content-Length: {cl!r}")
            n = int(cl)
            if n > MAX_BODY:
                raise Invalid("body too large")
            data = self.rfile.read(n)
            if len(data) != n:
                raise Invalid(f"body ended after {len(data)} of {n} bytes")
            return data

        def do_GET(self):
            if self.path == "/stats":
                with rx.lock:
                    self._answer(200, {"valid": rx.valid, "invalid": rx.invalid})
            else:
                self._answer(404, {"detail": "not found"})

        def do_POST(self):
            body = b""
            info = {"path": self.path}
            try:
                try:
                    body = self._read_body()
                except ValueError as e:
                    raise Invalid(f"unreadable body: {e}")
                u = urlsplit(self.path)
                m = ENVELOPE_PATH.match(u.path)
                if not m:
                    raise Invalid(f"not an envelope endpoint: {self.path!r}", 404)
                project = m.group(1)
                info["project"] = project
                # authentication
                hdr = self.headers.get_all("X-Sentry-Auth") or []
                if len(hdr) != 1:
                    raise Invalid(f"expected exactly one X-Sentry-Auth header, got {len(hdr)}", 403)
                auth = parse_auth(hdr[0])
                info["auth"] = auth
                if auth.get("sentry_version") != "7":
                    raise Invalid(f"X-Sentry-Auth sentry_version is {auth.get('sentry_version')!r}, not '7'", 403)
                if "sentry_key" not in auth:
                    raise Invalid("X-Sentry-Auth has no sentry_key", 403)
                info["sentry_key"] = auth["sentry_key"]
                if auth["sentry_key"] != rx.key:
                    raise Invalid(f"sentry_key {auth['sentry_key']!r} is not the project's key", 403)
                q = parse_qs(u.query)
                if "sentry_key" in q and q["sentry_key"] != [rx.key]:
                    raise Invalid("query-string sentry_key disagrees with X-Sentry-Auth", 403)
                # content type / encoding
                ctype = self.headers.get("Content-Type")
                if ctype is not None and ctype.split(";", 1)[0].strip().lower() not in CONTENT_TYPES:
                    raise Invalid(f"Content-Type {ctype!r} is not accepted by the envelope endpoint")
                enc = (self.headers.get("Content-Encoding") or "identity").strip().lower()
                if enc == "gzip":
                    body = gzip.decompress(body)
                elif enc == "deflate":
                    body = zlib.decompress(body)
                elif enc != "identity":
                    raise Invalid(f"unsupported Content-Encoding {enc!r}")
                # framing
                env_header, items = parse_envelope(body)
                check_envelope_header(env_header, rx.key, project)
                types = [ih["type"] for ih, _ in items]
                if types.count("event") > 1:
                    raise Invalid(f"{types.count('event')} event items in one envelope (at most one)")
                if "event" in types and "transaction" in types:
                    raise Invalid("event and transaction items in one envelope (mutually exclusive)")
                event = item_header = None
                warnings = []
                for ih, payload in items:
                    if ih["type"] != "event":
                        continue  # unknown/other types: skipped and retained
                    if "event_id" not in env_header:
                        raise Invalid("envelope with an event item has no event_id envelope header")
                    if len(payload) > MAX_EVENT:
                        raise Invalid(f"event item of {len(payload)} bytes exceeds 1 MB")
                    if "content_type" in ih and ih["content_type"] != "application/json":
                        raise Invalid(f"event item content_type {ih['content_type']!r} is not application/json")
                    event = loads_strict(payload, "event payload")
                    check_event(event)
                    if env_header["event_id"].replace("-", "").lower() != event["event_id"]:
                        warnings.append(f"envelope header event_id {env_header['event_id']} differs from "
                                        f"the payload's {event['event_id']} (the header takes precedence)")
                    item_header = ih
                if event is None:
                    raise Invalid(f"envelope carries no event item (items: {types})")
            except Invalid as e:
                rec = dict(info, ok=False, error=str(e), status=e.status,
                           body=body[:65536].decode("utf-8", "replace"))
                rx.record(rec)
                sys.stderr.write(f"receiver: rejected ({e.status}): {e}\n")
                sys.stderr.flush()
                self._answer(e.status, {"detail": str(e)})
                return
            except Exception as e:  # a receiver bug must not look like a valid event
                rx.record(dict(info, ok=False, error=f"receiver error: {e!r}", status=500,
                               body=body[:65536].decode("utf-8", "replace")))
                self._answer(500, {"detail": repr(e)})
                return
            rx.record(dict(info, ok=True, envelope_header=env_header, item_header=item_header,
                           item_types=types, event=event, warnings=warnings))
            self._answer(200, {"id": event["event_id"]})

    return Handler


def main(argv):
    if len(argv) != 4 or not argv[1].isdigit():
        sys.stderr.write("usage: receiver.py PORT KEY OUT_FILE\n")
        return 2
    port, key, out = int(argv[1]), argv[2], argv[3]
    rx = Receiver(key, out)
    srv = ThreadingHTTPServer(("127.0.0.1", port), make_handler(rx))
    srv.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"receiver: listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    srv.serve_forever(poll_interval=0.1)
    srv.server_close()
    rx.out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
