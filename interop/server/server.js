// An OAuth 2.0 / OpenID Connect provider (panva's oidc-provider) on loopback,
// configured for the autorefresh interop tests.
//
//   node server.js CONFIG.json
//
// CONFIG.json (written by the Go tests; every field optional):
//
//   {
//     "port": 0,                 // the provider's port; 0 picks a free one
//     "resourcePort": 0,         // the resource server's port; 0 picks a free one
//     "ttl": {"AccessToken": 60, "ClientCredentials": 60, "RefreshToken": 86400},
//     "privateKeyJwtJwk": {...}, // public JWK of the private_key_jwt client
//     "dpopRequireNonce": true,  // the provider demands DPoP nonces
//     "resourceRequireNonce": true // the resource server demands DPoP nonces
//   }
//
// When both ports listen it prints one JSON line on stdout,
// {"issuer":"http://127.0.0.1:P","resource":"http://127.0.0.1:R/api"}, and
// logs nothing else there. It exits when its standard input closes, so it
// never outlives the test process that started it.
//
// Routes besides oidc-provider's own (/.well-known/*, /auth, /token,
// /token/revocation, /token/introspection, /me, /jwks):
//
//   /interaction/:uid   logs in the login_hint account (default "alice") and
//                       grants every scope asked for, with oidc-provider's
//                       interactionDetails / interactionFinished API: the
//                       person at the login and consent pages.
//   GET  /_stats        counters as JSON (see stats below).
//   POST /_config       JSON {ttl, dpopRequireNonce, resourceRequireNonce,
//                       rotateResourceNonce}; changes apply to tokens issued
//                       from then on.
//   http://127.0.0.1:R/api  a resource server (its own origin) that accepts
//                       the provider's access tokens: Bearer, or DPoP with a
//                       valid proof for DPoP-bound tokens.
//
// Everything here is for tests on loopback: fixed client secrets, admin
// routes without authentication, state in memory.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import crypto from 'node:crypto';

import Provider, { errors } from 'oidc-provider';
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2] ?? '/dev/null', 'utf8') || '{}');

// state is what POST /_config changes.
const state = {
  ttl: { AccessToken: 60, ClientCredentials: 60, RefreshToken: 86400, ...config.ttl },
  dpopRequireNonce: config.dpopRequireNonce ?? true,
  resourceRequireNonce: config.resourceRequireNonce ?? true,
  resourceNonce: crypto.randomBytes(16).toString('base64url'),
};

// stats counts what the tests assert on:
//   grants[client_id][grant_type][outcome]: token endpoint answers, outcome
//     "ok" or the OAuth error code (invalid_grant, use_dpop_nonce, ...);
//     client_id "?" when the client was not identified.
//   reuses: refresh_token grants refused because the refresh token had
//     already been used (oidc-provider then revokes the whole grant).
//   grantsRevoked: grants revoked (reuse detection, refresh token revocation).
//   routes[route][status]: every answer of oidc-provider, by its route name
//     (token, userinfo, revocation, discovery, ...) and HTTP status.
//   resource[status]: every answer of the resource server.
const stats = { grants: {}, reuses: 0, grantsRevoked: 0, routes: {}, resource: {} };

function bump(obj, ...keys) {
  const last = keys.pop();
  for (const k of keys) obj = obj[k] ??= {};
  obj[last] = (obj[last] ?? 0) + 1;
}

// MapAdapter is oidc-provider's storage: its own in-memory adapter is an
// LRU of 1000 entries, which would drop live grants and refresh tokens
// once DPoP proofs and bursts fill it. This one keeps everything until it
// expires (a run lasts a minute). It follows the adapter interface of
// oidc-provider's memory adapter.
const storage = new Map(); // key -> { value, expiresAt (ms) }

// forgetSpent are the clients whose refresh tokens, once rotated, are
// deleted rather than marked as consumed: presenting one again is
// invalid_grant ("refresh token not found") without revoking the grant, as
// on servers that rotate refresh tokens without reuse detection. The other
// clients keep oidc-provider's reuse detection.
const forgetSpent = new Set(['refresh-forget']);
const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

function put(key, value, expiresIn) {
  storage.set(key, { value, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
}

function get(key) {
  const entry = storage.get(key);
  if (entry && entry.expiresAt <= Date.now()) {
    storage.delete(key);
    return undefined;
  }
  return entry?.value;
}

class MapAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.model === 'Session') put(`sessionUid:${payload.uid}`, id, expiresIn);
    if (grantable.has(this.model) && payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const keys = get(grantKey);
      if (keys) keys.push(key);
      else put(grantKey, [key]);
    }
    if (payload.userCode) put(`userCode:${payload.userCode}`, id, expiresIn);
    put(key, payload, expiresIn);
  }

  async find(id) { return get(this.key(id)); }

  async findByUid(uid) { return this.find(get(`sessionUid:${uid}`)); }

  async findByUserCode(userCode) { return this.find(get(`userCode:${userCode}`)); }

  async consume(id) {
    const payload = get(this.key(id));
    if (!payload) return;
    if (this.model === 'RefreshToken' && forgetSpent.has(payload.clientId)) {
      storage.delete(this.key(id));
      return;
    }
    payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { storage.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    for (const key of get(grantKey) ?? []) storage.delete(key);
    storage.delete(grantKey);
  }
}

async function listen(port) {
  const server = createServer();
  server.listen(port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

const asServer = await listen(config.port);
const rsServer = await listen(config.resourcePort);
const issuer = `http://127.0.0.1:${asServer.address().port}`;
const resourceURL = `http://127.0.0.1:${rsServer.address().port}/api`;

const { privateKey: signingKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const redirectURI = 'http://127.0.0.1/callback';

const clients = [
  {
    // refresh_token grant, confidential, HTTP Basic.
    client_id: 'refresh-basic',
    client_secret: 'refresh-basic-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: [redirectURI],
    scope: 'openid offline_access api:read',
  },
  {
    // refresh_token grant, confidential, secret in the form body.
    client_id: 'refresh-post',
    client_secret: 'refresh-post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: [redirectURI],
    scope: 'openid offline_access api:read',
  },
  {
    // refresh_token grant, confidential, HTTP Basic; its spent refresh
    // tokens are forgotten, not remembered (see forgetSpent).
    client_id: 'refresh-forget',
    client_secret: 'refresh-forget-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: [redirectURI],
    scope: 'openid offline_access api:read',
  },
  {
    // refresh_token grant, public client (PKCE, no secret).
    client_id: 'refresh-public',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: [redirectURI],
    scope: 'openid offline_access api:read',
  },
  {
    client_id: 'cc-basic',
    client_secret: 'cc-basic-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'api:read',
  },
  {
    client_id: 'cc-post',
    client_secret: 'cc-post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'api:read',
  },
  {
    // DPoP-bound tokens only (dpop_bound_access_tokens), public: its
    // refresh tokens are bound to the key too.
    client_id: 'dpop-public',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    dpop_bound_access_tokens: true,
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: [redirectURI],
    scope: 'openid offline_access api:read',
  },
  {
    client_id: 'dpop-cc',
    client_secret: 'dpop-cc-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'api:read',
  },
];

if (config.privateKeyJwtJwk) {
  clients.push({
    client_id: 'pkjwt',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [config.privateKeyJwtJwk] },
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    redirect_uris: [redirectURI],
    scope: 'openid offline_access api:read',
  });
}

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients,
  jwks: { keys: [{ ...signingKey.export({ format: 'jwk' }), kid: 'sig-1', use: 'sig' }] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'api:read'],
  claims: { openid: ['sub'] },
  findAccount: (ctx, accountId) => ({ accountId, claims: () => ({ sub: accountId }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  // oidc-provider accepts tokens up to 15s past their expiry by default;
  // the tests want them dead when expires_in says so.
  clockTolerance: 0,
  // DPoP keys the library may hold (issue 16); oidc-provider's default is
  // ES256 and EdDSA only. The resource server accepts the same.
  enabledJWA: { dPoPSigningAlgValues: ['ES256', 'EdDSA', 'RS256', 'PS256'] },
  clientBasedCORS: () => false,
  ttl: {
    AccessToken: () => state.ttl.AccessToken,
    ClientCredentials: () => state.ttl.ClientCredentials,
    RefreshToken: () => state.ttl.RefreshToken,
    AuthorizationCode: 60,
    Grant: 86400,
    Interaction: 600,
    Session: 86400,
    IdToken: 3600,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    dPoP: {
      enabled: true,
      nonceSecret: crypto.randomBytes(32),
      requireNonce: () => state.dpopRequireNonce,
    },
    resourceIndicators: {
      enabled: true,
      // The resource server is the one audience there is: a token asked
      // for with resource=<resourceURL> is bound to it.
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== resourceURL) throw new errors.InvalidTarget();
        return { scope: 'api:read', audience: resourceURL, accessTokenFormat: 'opaque' };
      },
    },
  },
});

provider.on('grant.success', (ctx) => {
  bump(stats.grants, ctx.oidc.client?.clientId ?? '?', ctx.oidc.params?.grant_type ?? '?', 'ok');
});
provider.on('grant.error', (ctx, err) => {
  bump(stats.grants, ctx.oidc?.client?.clientId ?? '?', ctx.oidc?.params?.grant_type ?? '?', err.error ?? 'error');
  if (err.error_detail === 'refresh token already used') stats.reuses += 1;
});
provider.on('grant.revoked', () => { stats.grantsRevoked += 1; });
provider.on('server_error', (ctx, err) => { console.error('server_error', err); });
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route) bump(stats.routes, ctx.oidc.route, String(ctx.status));
});

async function readJSON(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body ? JSON.parse(body) : {};
}

function sendJSON(res, status, value, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(JSON.stringify(value));
}

// interaction plays the person at the login and consent pages.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint || 'alice';
    return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  return sendJSON(res, 400, { error: `unexpected prompt ${prompt.name}` });
}

async function configure(req, res) {
  const change = await readJSON(req);
  Object.assign(state.ttl, change.ttl);
  if (typeof change.dpopRequireNonce === 'boolean') state.dpopRequireNonce = change.dpopRequireNonce;
  if (typeof change.resourceRequireNonce === 'boolean') state.resourceRequireNonce = change.resourceRequireNonce;
  if (change.rotateResourceNonce) state.resourceNonce = crypto.randomBytes(16).toString('base64url');
  const { resourceNonce, ...shown } = state;
  return sendJSON(res, 200, shown);
}

const callback = provider.callback();
asServer.on('request', async (req, res) => {
  try {
    const path = new URL(req.url, issuer).pathname;
    if (path.startsWith('/interaction/')) return await interaction(req, res);
    if (path === '/_stats' && req.method === 'GET') return sendJSON(res, 200, stats);
    if (path === '/_config' && req.method === 'POST') return await configure(req, res);
    return callback(req, res);
  } catch (err) {
    console.error(err);
    if (!res.headersSent) sendJSON(res, 500, { error: 'server_error' });
    else res.end();
  }
});

// The resource server.

const dpopAlgs = ['ES256', 'EdDSA', 'RS256', 'PS256'];
const seenJTI = new Map(); // jti -> expiry (ms) of the proofs seen

function challenge(scheme, error, description) {
  const algs = scheme === 'DPoP' ? ` algs="${dpopAlgs.join(' ')}"` : '';
  return `${scheme} realm="api"${error ? `, error="${error}", error_description="${description}"` : ''}${algs}`;
}

// checkProof verifies the DPoP proof of a request (RFC 9449 section 4.3)
// for the bound access token, and returns the error code to refuse it
// with, or undefined.
async function checkProof(req, token, value) {
  const proof = req.headers.dpop;
  if (typeof proof !== 'string') return ['invalid_dpop_proof', 'missing DPoP proof'];
  let header;
  let payload;
  try {
    ({ protectedHeader: header, payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: dpopAlgs }));
  } catch {
    return ['invalid_dpop_proof', 'bad signature or header'];
  }
  const now = Date.now();
  if (typeof payload.iat !== 'number' || Math.abs(now / 1000 - payload.iat) > 60) return ['invalid_dpop_proof', 'iat out of window'];
  if (payload.htm !== req.method) return ['invalid_dpop_proof', 'htm mismatch'];
  const htu = URL.parse(payload.htu ?? '');
  if (!htu) return ['invalid_dpop_proof', 'htu mismatch'];
  htu.search = '';
  htu.hash = '';
  if (htu.href !== resourceURL) return ['invalid_dpop_proof', 'htu mismatch'];
  if (payload.ath !== crypto.hash('sha256', value, 'base64url')) return ['invalid_dpop_proof', 'ath mismatch'];
  if (await calculateJwkThumbprint(header.jwk) !== token.jkt) return ['invalid_token', 'key does not match the token'];
  if (state.resourceRequireNonce && payload.nonce !== state.resourceNonce) return ['use_dpop_nonce', 'nonce required'];
  if (typeof payload.jti !== 'string' || !payload.jti || seenJTI.has(payload.jti)) return ['invalid_dpop_proof', 'jti missing or reused'];
  for (const [jti, exp] of seenJTI) if (exp < now) seenJTI.delete(jti);
  seenJTI.set(payload.jti, now + 120_000);
  return undefined;
}

async function resource(req, res) {
  const headers = { 'DPoP-Nonce': state.resourceNonce };
  const refuse = (scheme, error, description) => {
    bump(stats, 'resource', '401');
    return sendJSON(res, 401, { error }, { ...headers, 'WWW-Authenticate': challenge(scheme, error, description) });
  };
  if (new URL(req.url, resourceURL).pathname !== '/api') {
    bump(stats, 'resource', '404');
    return sendJSON(res, 404, { error: 'not_found' });
  }
  const m = /^(Bearer|DPoP) +(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return refuse('Bearer');
  const scheme = m[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
  const value = m[2];
  const token = await provider.AccessToken.find(value) ?? await provider.ClientCredentials.find(value);
  if (!token || (token.aud !== undefined && token.aud !== resourceURL)) {
    return refuse(scheme, 'invalid_token', 'unknown, expired or revoked token');
  }
  if (token.jkt) {
    if (scheme !== 'DPoP') return refuse('DPoP', 'invalid_token', 'DPoP-bound token sent as Bearer');
    const failure = await checkProof(req, token, value);
    if (failure) return refuse('DPoP', ...failure);
  } else if (scheme === 'DPoP') {
    return refuse('Bearer', 'invalid_token', 'token is not DPoP-bound');
  }
  bump(stats, 'resource', '200');
  return sendJSON(res, 200, { sub: token.accountId, client_id: token.clientId, scope: token.scope }, headers);
}

rsServer.on('request', async (req, res) => {
  try {
    await resource(req, res);
  } catch (err) {
    console.error(err);
    if (!res.headersSent) sendJSON(res, 500, { error: 'server_error' });
    else res.end();
  }
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));

console.log(JSON.stringify({ issuer, resource: resourceURL }));
