"""Bot Framework authentication, both ways.

Inbound: the Relay endpoint is public and anonymous by design, so the token the Bot Connector
puts in `Authorization: Bearer <JWT>` is the only thing that tells its requests from anyone
else's. `BotFrameworkAuth.authenticate` checks it the way "Authentication with the Bot
Connector API" describes (and botbuilder's channel validation does): RS256 only; the issuer
`https://api.botframework.com` (looked at before any key is fetched, so junk costs nothing);
the signature by a key from the published JWKS, found by `kid`; the audience is our app id;
`exp`/`nbf` with 5 minutes' leeway on the injected clock; the key's `endorsements` include the
activity's channel id; the `serviceurl` claim equals the activity's `serviceUrl` (so a token
cannot be replayed to make us send our own token elsewhere); then our own rules: only the
allowed channel ids, only our tenant. Failures are `AuthError` with 401 (no or a bad token) or
403 (a good token for something we refuse) and a reason for the log, never the token.

The OpenID metadata and JWKS are fetched with aiohttp, cached for a day, and refetched early
for an unknown `kid` at most once per 5 minutes, so a flood of forged `kid`s cannot make us
hammer login.botframework.com.

Outbound: `TokenProvider` gets an Entra client-credentials token from the bot's own tenant
(`{login_url}/{tenant}/oauth2/v2.0/token`; new bots are single-tenant, and the old
`botframework.com` authority answers AADSTS700016 for them), caches it until 5 minutes before
it expires, and lets one request fetch it while the others wait (single flight).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from jwt.algorithms import RSAAlgorithm

from chatopsd.connectors.teams.config import TeamsSection, is_loopback
from chatopsd.core.errors import FatalConnectorError, TransientSendError
from chatopsd.core.ports import Clock

log = logging.getLogger("chatopsd.teams.auth")

LEEWAY_SECONDS = 300.0  # "Industry-standard clock-skew is 5 minutes"
KEYS_MAX_AGE = 24 * 3600.0
UNKNOWN_KID_REFRESH = 300.0
TOKEN_MAX_CHARS = 16_384  # a Bot Connector JWT is about 1.5 kB
TOKEN_MARGIN = 300.0
_AADSTS = re.compile(r"AADSTS\d{4,7}")
_AADSTS_HINTS = {
    "AADSTS7000215": "the client secret is wrong or expired: set the credential "
    "teams_app_password to a current secret of the app registration",
    "AADSTS7000222": "the client secret has expired: create a new one and set the credential "
    "teams_app_password",
    "AADSTS700016": "the app id is not registered in this tenant: check teams.app_id and "
    "teams.tenant_id (a single-tenant bot needs its own tenant id)",
    "AADSTS90002": "no such tenant: check teams.tenant_id",
    "AADSTS500011": "the scope's resource is not known in the tenant: check the scope",
}


class AuthError(Exception):
    """An inbound request refused: `status` 401 (no or an invalid token) or 403 (a valid
    token for something this bot does not accept)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TokenRefused(FatalConnectorError):
    """Entra refused the bot's credentials: a human has to fix the app id, tenant or secret."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What an accepted request proved."""

    app_id: str
    service_url: str
    channel_id: str
    tenant_id: str
    key_id: str


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: Any  # an RSA public key (cryptography)
    endorsements: frozenset[str]


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


def _same_service_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


class BotFrameworkAuth:
    """Checks the Bot Connector's token on every relayed request."""

    def __init__(
        self,
        cfg: TeamsSection,
        *,
        clock: Clock,
        http: aiohttp.ClientSession | None = None,
        leeway: float = LEEWAY_SECONDS,
        keys_max_age: float = KEYS_MAX_AGE,
        unknown_kid_refresh: float = UNKNOWN_KID_REFRESH,
        timeout: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self._http = http
        self._own_http = http is None
        self.leeway = leeway
        self.keys_max_age = keys_max_age
        self.unknown_kid_refresh = unknown_kid_refresh
        self.timeout = timeout
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # JWKS refreshes attempted (health, tests)

    async def authenticate(
        self, authorization: str | None, *, service_url: str, channel_id: str, tenant_id: str
    ) -> Claims:
        """The claims of a valid token for this activity, or AuthError."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError(401, "the token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise AuthError(401, f"signing algorithm {str(header.get('alg'))[:20]!r} refused")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(401, "the token names no signing key (kid)")
        if unverified.get("iss") != self.cfg.token_issuer:
            # Checked before any key is fetched: junk costs no request to Microsoft.
            raise AuthError(401, "the token's issuer is not the Bot Framework")
        key = await self._key(kid)
        if key is None:
            raise AuthError(401, "the token's signing key is not published")
        claims = self._verify(token, key)
        self._check_time(claims)
        if channel_id not in key.endorsements:
            raise AuthError(403, f"the signing key is not endorsed for channel {channel_id!r}")
        claimed = claims.get("serviceurl")
        if not isinstance(claimed, str) or not _same_service_url(claimed, service_url):
            raise AuthError(403, "the token's serviceurl is not the activity's serviceUrl")
        if channel_id not in self.cfg.allowed_channel_ids:
            raise AuthError(403, f"channel {channel_id!r} is not in teams.allowed_channel_ids")
        if tenant_id != self.cfg.tenant_id:
            raise AuthError(403, "the activity is from another tenant")
        return Claims(self.cfg.app_id, service_url, channel_id, tenant_id, kid)

    def _verify(self, token: str, key: SigningKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.cfg.app_id,
                issuer=self.cfg.token_issuer,
                # Time is checked against the injected clock below.
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthError(401, "bad token signature") from None
        except jwt.InvalidAudienceError:
            raise AuthError(401, "the token is for another app (aud)") from None
        except jwt.InvalidIssuerError:
            raise AuthError(401, "the token's issuer is not the Bot Framework") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"invalid token ({type(exc).__name__})") from None

    def _check_time(self, claims: Mapping[str, Any]) -> None:
        now = self.clock.now().timestamp()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise AuthError(401, "the token has no valid expiry")
        if now > exp + self.leeway:
            raise AuthError(401, "the token has expired")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool):
                raise AuthError(401, "the token's nbf is not a time")
            if now < nbf - self.leeway:
                raise AuthError(401, "the token is not valid yet")

    # -- keys ------------------------------------------------------------------------------

    async def _key(self, kid: str) -> SigningKey | None:
        if self._fetched_at is None or self.clock.monotonic() - self._fetched_at >= (
            self.keys_max_age
        ):
            await self._refresh(self._fetched_at)
        key = self._keys.get(kid)
        if key is None:
            # A new key (Microsoft rotates them) or a forged kid: at most one refresh per
            # period, counting every refresh, so junk kids cannot make us hammer the JWKS.
            last = self._attempted_at
            if last is None or self.clock.monotonic() - last >= self.unknown_kid_refresh:
                await self._refresh(self._fetched_at)
                key = self._keys.get(kid)
        return key

    def endorsed(self, channels: Collection[str]) -> int:
        """How many of the fetched keys are endorsed for any of `channels` (doctor)."""
        wanted = set(channels)
        return sum(1 for key in self._keys.values() if wanted & set(key.endorsements))

    async def prefetch(self) -> int:
        """Fetch the keys now (at start, and for `doctor`); the number published."""
        await self._refresh(self._fetched_at, raise_errors=True)
        return len(self._keys)

    async def _refresh(self, seen: float | None, *, raise_errors: bool = False) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another request refreshed while this one waited
            now = self._attempted_at = self.clock.monotonic()
            self.fetches += 1
            try:
                self._keys = await self._fetch_keys()
            except KeysUnavailable as exc:
                log.warning("teams: could not fetch the Bot Framework signing keys: %s", exc)
                # Keep the keys we had; the next attempt comes after one refresh period.
                self._fetched_at = now - max(0.0, self.keys_max_age - self.unknown_kid_refresh)
                if raise_errors:
                    raise
                return
            self._fetched_at = now

    async def _fetch_keys(self) -> dict[str, SigningKey]:
        metadata = await self._get_json(self.cfg.openid_url, "OpenID metadata")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _secure(jwks_uri):
            raise KeysUnavailable("the OpenID metadata has no https jwks_uri")
        algs = metadata.get("id_token_signing_alg_values_supported")
        if isinstance(algs, list) and "RS256" not in algs:
            raise KeysUnavailable("the OpenID metadata does not list RS256")
        jwks = await self._get_json(jwks_uri, "JWKS")
        keys: dict[str, SigningKey] = {}
        entries = jwks.get("keys")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            kid = entry.get("kid")
            endorsements = entry.get("endorsements")
            if not isinstance(kid, str):
                continue
            try:
                public = RSAAlgorithm.from_jwk(json.dumps(entry))
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                log.info("teams: malformed key %s in the JWKS skipped", kid[:40])
                continue
            names = endorsements if isinstance(endorsements, list) else []
            keys[kid] = SigningKey(public, frozenset(e for e in names if isinstance(e, str)))
        if not keys:
            raise KeysUnavailable("the JWKS holds no RSA key")
        return keys

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self._session().get(
                url, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as r:
                if r.status != 200:
                    raise KeysUnavailable(f"{what}: HTTP {r.status}")
                body = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise KeysUnavailable(f"{what}: {type(exc).__name__}") from None
        if not isinstance(body, dict):
            raise KeysUnavailable(f"{what} is not a JSON object")
        return body

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(trust_env=True)
            self._own_http = True
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None


class KeysUnavailable(Exception):
    """The OpenID metadata or the JWKS could not be fetched or read."""


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError(401, "no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "the Authorization header is not a Bearer token")
    if len(token) > TOKEN_MAX_CHARS:
        raise AuthError(401, "the token is too long")
    return token.strip()


# -- outbound tokens ---------------------------------------------------------------------


class TokenProvider:
    """An Entra client-credentials token for one scope (Bot Connector, or Graph)."""

    def __init__(
        self,
        cfg: TeamsSection,
        scope: str,
        *,
        clock: Clock,
        http: aiohttp.ClientSession | None = None,
        margin: float = TOKEN_MARGIN,
        timeout: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.scope = scope
        self.clock = clock
        self._http = http
        self._own_http = http is None
        self.margin = margin
        self.timeout = timeout
        self.url = f"{cfg.login_url.rstrip('/')}/{cfg.tenant_id}/oauth2/v2.0/token"
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def token(self) -> str:
        if self._token is not None and self.clock.monotonic() < self._valid_until:
            return self._token
        async with self._lock:  # single flight: the others wait and take its token
            if self._token is not None and self.clock.monotonic() < self._valid_until:
                return self._token
            token, lifetime = await self._fetch()
            self._token = token
            self._valid_until = self.clock.monotonic() + max(
                0.0, lifetime - min(self.margin, lifetime / 2)
            )
            return token

    def invalidate(self) -> None:
        """Forget the cached token (the Connector said 401: revoked or rotated)."""
        self._token = None

    async def _fetch(self) -> tuple[str, float]:
        self.fetches += 1
        form = {
            "grant_type": "client_credentials",
            "client_id": self.cfg.app_id,
            "client_secret": self.cfg.app_password.get_secret_value(),
            "scope": self.scope,
        }
        try:
            async with self._session().post(
                self.url, data=form, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as r:
                status = r.status
                try:
                    body = await r.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSendError(
                f"teams: token request failed ({type(exc).__name__})"
            ) from None
        body = body if isinstance(body, dict) else {}
        if status in (400, 401, 403):
            raise TokenRefused(_refusal(status, body))
        if status != 200:
            raise TransientSendError(f"teams: token request answered HTTP {status}")
        token, lifetime = body.get("access_token"), body.get("expires_in")
        try:
            seconds = float(lifetime) if lifetime is not None else 3599.0
        except (TypeError, ValueError):
            seconds = 0.0
        if not isinstance(token, str) or not token or seconds <= 0:
            raise TransientSendError("teams: the token answer has no access_token/expires_in")
        return token, seconds

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(trust_env=True)
            self._own_http = True
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None


def _refusal(status: int, body: Mapping[str, Any]) -> str:
    """Entra's refusal in a sentence: the AADSTS code, what it means, no secret."""
    described = str(body.get("error_description") or "")
    codes = body.get("error_codes")
    code = ""
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        code = f"AADSTS{codes[0]}"
    else:
        found = _AADSTS.search(described)
        code = found.group(0) if found else ""
    hint = _AADSTS_HINTS.get(code, "")
    first = described.split("\r\n", 1)[0].split("\n", 1)[0][:200]
    error = str(body.get("error") or "")[:60]
    parts = [f"Entra refused the bot's credentials (HTTP {status}"]
    parts.append(f", {error})" if error else ")")
    text = "".join(parts)
    if hint:
        return f"{text}: {hint} [{code}]"
    return f"{text}: {first}" if first else text
