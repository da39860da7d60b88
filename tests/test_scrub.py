"""Secrets in exception messages and source lines are redacted; the code and prose around them are not."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from obs._scrub import REDACTED, Scrubber, secret_name

R = REDACTED
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
# Only word characters and dots, so it also reads as an attribute chain (`a.b.c`) to the assignment rule.
JWT_DOTTED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVP_mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


@pytest.fixture(scope="module")
def scrub() -> Scrubber:
    return Scrubber()


def test_redacted_marker() -> None:
    assert REDACTED == "[redacted]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # passwords in URLs
        ("postgres://app:hunter2@db.internal:5432/app", f"postgres://app:{R}@db.internal:5432/app"),
        (
            "connect to redis://:s3cret@localhost:6379/0 failed",
            f"connect to redis://:{R}@localhost:6379/0 failed",
        ),
        ("https://user:p@ss@example.com/a@b", f"https://user:{R}@example.com/a@b"),
        ("url='amqp+ssl://guest:guest@mq/vhost'", f"url='amqp+ssl://guest:{R}@mq/vhost'"),
        # HTTP auth schemes: the scheme word stays
        ("Authorization: Bearer abc123def456", f"Authorization: Bearer {R}"),
        ("authorization: bearer abc123def456", f"authorization: bearer {R}"),
        ("sent Bearer abcdefghijklmnopqrstuvwxyz to api", f"sent Bearer {R} to api"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {R}"),
        ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", f"Authorization: Token {R}"),
        ("{'Authorization': 'Bearer abc123def456'}", f"{{'Authorization': '{R}'}}"),
        ("Authorization: Basic abc=def12345", f"Authorization: Basic {R}"),
        # provider keys, anywhere
        ("key phc_abcdefghijklmnop1234567890ABCDEFGHIJ rejected", f"key {R} rejected"),
        ("phx_abcdefghijklmnopQRST1234", R),
        ("phs_abcdefghijklmnopQRST1234", R),
        ("OpenAI(sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL)", f"OpenAI({R})"),
        ("key=sk-proj-Abc123_def456-GHI789jklMNO", f"key={R}"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz-AA", R),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", R),
        ("gho_abcdefghijklmnopqrstuvwxyz0123456789", R),
        ("ghs_abcdefghijklmnopqrstuvwxyz0123456789", R),
        ("github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789", R),
        ("slack xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOp", f"slack {R}"),
        ("xoxp-1234567890-abcdefghijklmnop", R),
        ("id AKIAIOSFODNN7EXAMPLE denied", f"id {R} denied"),
        ("ASIAIOSFODNN7EXAMPLE", R),
        (
            "https://maps.googleapis.com/x?k=AIzaSyA1234567890abcdefghijklmnopqrstuv",
            f"https://maps.googleapis.com/x?k={R}",
        ),
        ("stripe sk_live_abcdefghijklmnop1234", f"stripe {R}"),
        ("rk_live_abcdefghijklmnop1234 pk_live_abcdefghijklmnop1234", f"{R} {R}"),
        (f"jwt {JWT} expired", f"jwt {R} expired"),
        # secret-named keys in code: quotes kept
        ('api_key = "abc123"', f'api_key = "{R}"'),
        ("password='hunter2'", f"password='{R}'"),
        ('OPENAI_API_KEY = "not-a-real-key"', f'OPENAI_API_KEY = "{R}"'),
        ("SECRET_KEY = 'django-insecure-xyz'", f"SECRET_KEY = '{R}'"),
        ('client_secret: str = "abc"', f'client_secret: str = "{R}"'),
        ('def connect(passwd: str | None = "changeme"):', f'def connect(passwd: str | None = "{R}"):'),
        ('api_key: Optional[str] = "sk"', f'api_key: Optional[str] = "{R}"'),
        ('password: str="abc"', f'password: str="{R}"'),
        ('if password == "letmein":', f'if password == "{R}":'),
        ('self.access_token = f"tok-{n}"', f'self.access_token = f"{R}"'),
        ("clientSecret: 'xyz'", f"clientSecret: '{R}'"),
        ('privateKey = "-----BEGIN', f'privateKey = "{R}'),  # a cut context line has no closing quote
        ('token = "a\\"b"', f'token = "{R}"'),
        # dict reprs and JSON
        ("{'password': 'x', 'user': 'bob'}", f"{{'password': '{R}', 'user': 'bob'}}"),
        ('{"token": "abc", "n": 1}', f'{{"token": "{R}", "n": 1}}'),
        ('{"refresh_token":"r1","apikey":"k2"}', f'{{"refresh_token":"{R}","apikey":"{R}"}}'),
        ("User(name='bob', private_key='MIIEvQ')", f"User(name='bob', private_key='{R}')"),
        # query strings, env, logs, YAML, headers
        ("GET /cb?token=abc&x=1", f"GET /cb?token={R}&x=1"),
        ("GET /cb?x=1&access_token=abc.def-ghi#frag", f"GET /cb?x=1&access_token={R}"),
        ("DB_PASSWORD=hunter2", f"DB_PASSWORD={R}"),
        ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", f"export AWS_SECRET_ACCESS_KEY={R}"),
        ("login failed user=bob password=hunter2, retrying", f"login failed user=bob password={R}, retrying"),
        ("password: hunter2", f"password: {R}"),
        ("password: abc=def", f"password: {R}"),  # not an annotation `abc` followed by `= def`
        ("auth: s3cr3t!", f"auth: {R}"),
        ("X-Api-Key: abc123", f"X-Api-Key: {R}"),
        ("--passphrase=correct-horse", f"--passphrase={R}"),
        ("first line\ntoken=abc\nlast line", f"first line\ntoken={R}\nlast line"),
        ("token = 123abc", f"token = {R}"),
        (f"token={JWT_DOTTED}", f"token={R}"),
        (f"access_token = {JWT}", f"access_token = {R}"),
    ],
)
def test_redacts_only_the_secret(scrub: Scrubber, text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # prose and ordinary code
        "Bearer of bad news",
        "Token authentication failed for user bob",
        "Basic usage: see the docs",
        "Bearer abcdefgh",  # no digit and shorter than 20 characters
        "the password is too short",
        "invalid password",
        "def handle(request): return render(request, 'x.html')",
        "for key, value in sorted(items.items(), key=lambda kv: kv[0]):",
        "contact support@example.com or visit https://example.com/path?x=1",
        "http://localhost:8080/health",
        "git@github.com:org/repo.git",
        # prefixes without a key behind them, and look-alikes
        "phc_",
        "the phc_ prefix marks project keys",
        "pip install sk-learn",
        "import sklearn  # sk-learn, scikit-learn",
        "sk-short1234",
        "task-abcdefghijklmnopqrstuvwxyz012",
        "AKIA1234",
        "eyJhbGciOi alone",
        # names that only look like secret names
        "author = 'Jane'",
        "tokenizer = 'gpt2'",
        "max_tokens=100",
        "secretary: Bob",
        "passwords = []",
        # values that are code, not literals
        'password = request.form["password"]',
        "api_key=settings.api_key",
        "token = None",
        "token: str | None = None",
        "secret = True",
        "token = get_token()",
        "password = os.environ['DB_PASSWORD']",
        "client = Client(api_key=api_key, host=host)",
        "Client(openai_api_key=openai_api_key)",
        "history: dict[str, list[int]] = {}",
        "x_token: dict[str, list[int]] = {}",
        "password = pw",
        "def login(username: str, password: str) -> Token:",
        "token: Token = make()",
        "token_limit = 4096",
        "if token == expected:",
        "password = ''",
        'headers["Authorization"] = f"Bearer {token}"',
    ],
)
def test_leaves_non_secrets_alone(scrub: Scrubber, text: str) -> None:
    assert scrub(text) == text


def test_several_secrets_on_one_line(scrub: Scrubber) -> None:
    text = "postgres://u:pw1@h api_key='k' Bearer abc123def456 sk-abcdefghijklmnop1234"
    assert scrub(text) == f"postgres://u:{R}@h api_key='{R}' Bearer {R} {R}"


def test_extra_patterns_replace_whole_match() -> None:
    scrub = Scrubber(extra_patterns=[r"acct-\d{6}", r"(?i)internal-[a-z]+"])
    assert scrub("account acct-123456 on INTERNAL-host") == f"account {R} on {R}"


def test_extra_pattern_secret_group_replaces_only_that_group() -> None:
    scrub = Scrubber(extra_patterns=[r"pin=(?P<secret>\d+)", r"x(?P<secret>y)?z"])
    assert scrub("user pin=1234 ok") == f"user pin={R} ok"
    assert scrub("xyz xz") == f"x{R}z xz"  # a group that did not take part leaves the match alone


def test_extra_pattern_that_matches_empty_text_inserts_nothing() -> None:
    assert Scrubber(extra_patterns=[r"\d*"])("ab 12 cd") == f"ab {R} cd"


def test_invalid_extra_pattern_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"invalid scrub pattern '\(unclosed'"):
        Scrubber(extra_patterns=["ok", "(unclosed"])


def test_disabled_applies_only_extra_patterns() -> None:
    text = "password=hunter2 acct-123456"
    assert Scrubber(enabled=False, extra_patterns=[r"acct-\d+"])(text) == f"password=hunter2 {R}"
    assert Scrubber(enabled=False)(text) is text


def test_extra_patterns_apply_after_defaults() -> None:
    scrub = Scrubber(extra_patterns=[r"acct-\d+"])
    assert scrub("password=hunter2 acct-1") == f"password={R} {R}"


def test_never_raises_on_non_str(scrub: Scrubber) -> None:
    for value in (None, 42, b"password=x"):
        bad: Any = value
        assert scrub(bad) is bad


@pytest.mark.parametrize(
    "text",
    [
        "a://" + "a:" * 50000,
        "token @ a://" + "a:" * 50000,  # triggers defeat the fast path, so the full pattern runs
        "a://b:" * 20000 + " @ token",
        "Bearer " + "a" * 100_000,
        "Bearer aaaaaaa " * 7000,
        "password_" * 10000 + "=x",
        "password." * 10000,
        "password=" * 10000,
        "password:" + " " * 100_000 + "=x",
        "password: " + "a " * 50000,
        'password = "' + "\\a" * 50000,
        "password" + ":" * 100_000,
        "eyJ" + "a" * 100_000 + ".eyJ",
        "eyJa." * 20000,
        "sk-" * 30000,
        "@" * 100_000 + "key",
        "aB" * 50000 + "Password=1",
    ],
    ids=lambda t: repr(t[:16]),
)
def test_pathological_input_finishes_quickly(scrub: Scrubber, text: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(scrub, text).result(timeout=2)
    assert isinstance(result, str)


@pytest.mark.parametrize(
    "name",
    ["password", "db_password", "passwd", "apiKey", "APIKey", "OPENAI_API_KEY", "auth_token", "client-secret",
     "passwordHash", "key", "sort_key", "HTTPAuth", "credentials", "session_cookie", "passphrase"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize(
    "name", ["author", "keyboard", "tokenizer", "max_tokens", "secretary", "bypass", "name", "monkey", ""]
)
def test_names_that_only_look_like_secret_names(name: str) -> None:
    assert not secret_name(name)
