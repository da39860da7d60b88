"""Secret scrubbing for exception messages, source context lines and (later) LLM payloads.

A :class:`Scrubber` runs on the background worker for every context line of every captured exception, so
the built-in detections are one compiled alternation and text without any trigger substring skips the
regex engine entirely. Only the secret part of a match is replaced, so a line stays readable:
``api_key = "[redacted]"``, ``https://user:[redacted]@host``, ``Authorization: Bearer [redacted]``.

No quantified group can match the same text in more than one way, and runs that could backtrack are
either bounded or start only after a fixed anchor (`://`, a secret word, a key prefix), so the cost on
hostile input grows linearly with its length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

REDACTED = "[redacted]"

# Password of `scheme://user:password@host`. The password may itself contain `@`: the greedy run backs off
# to the last `@` before the path, which is what URL parsers do with unencoded passwords.
_URL = (
    r"(?P<url_user>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/?#@]{0,256}:)"
    r"(?P<url>[^\s/?#]{1,256})(?=@)"
)

# RFC 6750 b64token. A digit or >= 20 characters tells a credential from prose ("Bearer of bad news",
# "Token authentication failed").
_TOK = r"[A-Za-z0-9._~+/=-]"
_AUTH = (
    rf"(?P<scheme>(?=[BbTt])(?<![A-Za-z0-9])(?i:bearer|basic|token)[ \t]+)"
    rf"(?P<auth>(?={_TOK}*\d|{_TOK}{{20}}){_TOK}{{8,}})"
)

# Provider formats. Prefixed keys need >= 16 characters after the prefix so words like `sk-learn` survive.
_KEYS = (
    r"(?P<key>(?=[psgrxAe])(?<![A-Za-z0-9])(?:"
    r"ph[cxs]_[A-Za-z0-9]{16,}"  # PostHog project / personal / secret keys
    r"|sk-[A-Za-z0-9_-]{16,}"  # OpenAI sk-…, sk-proj-…; Anthropic sk-ant-…
    r"|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"
    r"|xox[abpors]-[A-Za-z0-9-]{16,}"  # Slack
    r"|[srp]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"  # AWS access key id (long-lived / temporary)
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWT: base64url '{"' header and payload
    r"))"
)

# `<name> <sep> <value>` where the name contains a secret word. Any prefix is allowed (`db_password`,
# `OPENAI_API_KEY`, `clientSecret`), so the match starts at the word itself; a suffix only after `_`/`-` or a
# camelCase hump (`SECRET_KEY`, `passwordHash`), so `author`, `tokenizer` and `max_tokens` are not names.
# The separator may carry a type annotation (`password: str = "x"`). Quoted values are always literals;
# the closing quote is optional because context lines are cut at a maximum length. A bare value does not
# end in `:` so `if token == expected:` reads as code.
_TYPE = r"[\w.]{1,64}(?:\[[\w.\[\], |]{0,64}\])?"
# `: T = ` / `: A | B = `; the `=` must be followed by a space or a quote, else `password: abc=def` (YAML)
# would read as an annotation `abc` and leave `abc` in the clear.
_ANNOTATION = rf"[ \t]*:[ \t]*{_TYPE}(?:[ \t]*\|[ \t]*{_TYPE}){{0,4}}[ \t]*=(?=[ \t]|[rbfuRBFU]{{0,2}}[\"'])"
_ASSIGN = (
    r"(?P<name>(?=[PpSsTtAa])"  # a cheap first-character test before trying the words case-insensitively
    r"(?i:pass(?:word|wd|phrase)|secret|token|api[_-]?key|auth(?:orization)?|private[_-]?key)"
    r"(?:(?:[_-]|(?<=[a-z])(?=[A-Z]))[A-Za-z0-9_-]{0,64})?)(?![A-Za-z0-9])[\"']?"
    rf"(?P<sep>(?:{_ANNOTATION}|[ \t]*(?:[:=]{{1,2}}|=>))[ \t]*)"
    r"(?:[rbfuRBFU]{0,2}\"(?P<dq>(?:[^\"\\\n]|\\.)+)\"?"
    r"|[rbfuRBFU]{0,2}'(?P<sq>(?:[^'\\\n]|\\.)+)'?"
    r"|(?P<bare>[^\s\"'`&,;(){}\[\]<>]*[^\s\"'`&,;(){}\[\]<>:]))"
)

# Lower-case substrings at least one of which every default detection contains. About 95% of source lines
# contain none, and looking for them costs about a quarter of a search with the full pattern (~2 vs ~9 us
# on an 80-character line).
_TRIGGERS = (
    "@", "pass", "secret", "token", "key", "auth", "bearer", "basic", "phc_", "phx_", "phs_", "sk-",
    "k_live_", "k_test_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "akia", "asia",
    "aiza", "eyj",
)  # fmt: skip

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_NUMBER = re.compile(r"[-+]?(?:0[xob][0-9a-f_]+|\d[\d_]*\.?\d*(?:e[-+]?\d+)?)", re.IGNORECASE)
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_LITERALS = frozenset({"none", "null", "nil", "true", "false", "undefined"})
# A bare scheme word after `Authorization:` is kept so the Bearer/Basic/Token rule redacts the token after it.
_SCHEMES = frozenset({"bearer", "basic", "token"})
_TYPES = frozenset({"str", "bytes", "int", "float", "bool", "object", "dict", "list", "tuple", "set", "type"})


# Words that make a name (a CLI option, a field) one whose value is a secret: `password`, `db_password`,
# `apiKey`, `OPENAI_API_KEY`, `auth_token`, `--client-secret`. Whole words only, so `author`, `keyboard`,
# `tokenizer` and `max_tokens` are not secret names.
_SECRET_WORDS = frozenset(
    {
        "pass", "passwd", "password", "passphrase", "pwd", "secret", "token", "key", "apikey", "auth",
        "authorization", "credential", "credentials", "cookie", "privatekey", "signature",
    }
)  # fmt: skip
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def secret_name(name: str) -> bool:
    """Whether ``name`` (snake_case, kebab-case or camelCase) says that its value is a secret."""
    return any(w.lower() in _SECRET_WORDS for w in _WORDS.findall(name))


class Scrubber:
    """``scrub(text)`` returns ``text`` with secrets replaced by :data:`REDACTED`; it never raises.

    ``enabled=False`` turns off the built-in detections; ``extra_patterns`` (user regexes) always apply.
    A match of an extra pattern is replaced whole, or only its ``secret`` group if it has one.
    Raises ``ValueError`` naming the pattern if one of ``extra_patterns`` is not a valid regex.
    """

    __slots__ = ("_defaults", "_extra", "_triggers")

    def __init__(self, enabled: bool = True, extra_patterns: Sequence[str] = ()) -> None:
        self._defaults = re.compile("|".join((_URL, _AUTH, _KEYS, _ASSIGN))) if enabled else None
        self._triggers = re.compile("|".join(map(re.escape, _TRIGGERS)))
        self._extra = [_compile_extra(p) for p in extra_patterns]

    def __call__(self, text: str) -> str:
        out = text
        try:
            if self._defaults is not None and self._triggers.search(out.lower()) is not None:
                out = self._scrub_defaults(self._defaults, out)
            for rx in self._extra:
                out = rx.sub(_replace_extra, out)
        except Exception:
            # Unreachable for str input; an SDK must still never turn a capture into a crash.
            return text
        return out

    @staticmethod
    def _scrub_defaults(rx: re.Pattern[str], text: str) -> str:
        parts: list[str] = []
        copied = pos = 0
        while (m := rx.search(text, pos)) is not None:
            # Each alternative ends with its secret group, so the last group closed is the one to replace.
            group = m.lastgroup or 0
            start, end = m.span(group)
            if group == "bare" and _is_code(m):
                # Rescan from the value: it may hold something else to redact (`Authorization: Bearer …`).
                pos = start
                continue
            parts += (text[copied:start], REDACTED)
            copied = pos = end
        if not parts:
            return text
        parts.append(text[copied:])
        return "".join(parts)


def _is_code(m: re.Match[str]) -> bool:
    """Whether an unquoted value is an expression in source code rather than a literal secret.

    Kept: literals (`token = None`), attribute chains (`api_key=settings.api_key`), calls and subscripts
    (`password = request.form["password"]`), a kwarg passed on under its own name (`api_key=api_key`), an
    identifier or number after an `=` followed by whitespace (PEP 8 assignment: `password = pw`,
    `token_limit = 4096`) and a type after `:` (`password: str`). Everything else is redacted: env, query
    and log style `DB_PASSWORD=hunter2`, `?token=abc`, YAML `password: hunter2`, `token = 123abc`.
    """
    value, sep = m["bare"], m["sep"]
    low = value.lower()
    if low in _LITERALS or low in _SCHEMES or _CHAIN.fullmatch(value):
        return True
    spaced_assignment = "=" in sep and sep[-1] in " \t"
    if not _IDENT.fullmatch(value):
        return spaced_assignment and _NUMBER.fullmatch(value) is not None
    text, name_end = m.string, m.end("name")
    # The match starts at the secret word; the full name is the identifier run that ends with it.
    name = _NOT_NAME.split(text[max(0, name_end - 128) : name_end])[-1]
    return (
        text[m.end() : m.end() + 1] in ("(", "[")
        or low == name.lower()
        or spaced_assignment
        or (":" in sep and (value in _TYPES or (value[0].isupper() and value.isalpha())))
    )


def _compile_extra(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise ValueError(f"invalid scrub pattern {pattern!r}: {e}") from e


def _replace_extra(m: re.Match[str]) -> str:
    whole = m.group(0)
    if not whole:
        return whole  # a pattern that can match empty text must not sprinkle REDACTED between characters
    if "secret" not in m.re.groupindex:
        return REDACTED
    start, end = m.span("secret")
    if start == end:  # the group did not take part in the match, or matched nothing
        return whole
    offset = m.start()
    return whole[: start - offset] + REDACTED + whole[end - offset :]
