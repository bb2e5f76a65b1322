// Local OpenID Connect provider for Portolan's integration tests.
//
// A real OpenID Provider (npm `oidc-provider`) that the Rust integration tests
// start as a child process to exercise the server's "authorization code +
// PKCE" sign-in end to end. It is a test fixture only: in-memory storage, an
// RSA signing key generated at start-up, plain http on 127.0.0.1, and no
// human interaction -- the account named by the authorization request's
// `login_hint` is signed in and its consent granted automatically.
//
// Run (after `npm ci` in this directory):  node provider.mjs
//
// Environment:
//   OIDC_PORT           TCP port on 127.0.0.1; 0 (the default) picks a free one.
//   OIDC_CLIENT_ID      the single registered client's id (confidential,
//   OIDC_CLIENT_SECRET  client_secret_basic, authorization_code, response
//   OIDC_REDIRECT_URI   type `code`, this one exact redirect_uri).
//   OIDC_USERS          JSON object: account id -> claims, e.g.
//                       {"ana": {"email": "ana@example.com", "name": "Ana",
//                                "groups": ["team-cart", "ops"]}}
//   OIDC_DEBUG          optional; "1" logs provider error events to stderr.
//
// Once it accepts connections it prints exactly one line to stdout:
//   listening http://127.0.0.1:<port>
// That URL is the issuer; discovery is at <issuer>/.well-known/openid-configuration.
// Errors and diagnostics go to stderr only. SIGTERM / SIGINT exit with status 0.
//
// Behaviour:
//   * PKCE is required, S256 only.
//   * Scopes: openid email profile groups. The ID token itself carries the
//     scope claims (email, email_verified if given, name, groups), not only
//     the userinfo endpoint (conformIdTokenClaims: false).
//   * ID tokens are signed with RS256; the public key is served at jwks_uri.
//   * The authorization endpoint sends the user agent to /interaction/<uid>,
//     which signs in `login_hint` (must be a key of OIDC_USERS) and saves a
//     Grant for the requested scopes, then resumes the request, which
//     redirects to the redirect_uri with `code`, `state` and `iss`. An unknown
//     or missing login_hint ends with `error=access_denied` at the redirect_uri.
//     These hops rely on cookies, so the client must keep a cookie jar.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc-provider harness: ${message}\n`);
  process.exit(2);
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is required`);
  return value;
}

const port = Number.parseInt(process.env.OIDC_PORT ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('OIDC_PORT must be a port number (0 = any free port)');
const clientId = requiredEnv('OIDC_CLIENT_ID');
const clientSecret = requiredEnv('OIDC_CLIENT_SECRET');
const redirectUri = requiredEnv('OIDC_REDIRECT_URI');
let users;
try {
  users = JSON.parse(process.env.OIDC_USERS ?? '{}');
} catch (err) {
  fail(`OIDC_USERS is not valid JSON: ${err.message}`);
}
if (users === null || typeof users !== 'object' || Array.isArray(users)) fail('OIDC_USERS must be a JSON object');
const debug = process.env.OIDC_DEBUG === '1';

function knownAccount(id) {
  return typeof id === 'string' && Object.hasOwn(users, id);
}

// Minimal in-memory storage adapter (the built-in one works too, but warns on
// every start). One instance per model name; all share `store`.
const store = new Map(); // key -> { payload, expiresAt }
const grantIndex = new Map(); // grantId -> Set of keys
class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  lookup(key) {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
    if (this.model === 'Session' && payload.uid) {
      store.set(`SessionUid:${payload.uid}`, { payload: id, expiresAt: store.get(key).expiresAt });
    }
    if (payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
    if (payload.userCode) {
      store.set(`UserCode:${payload.userCode}`, { payload: id, expiresAt: store.get(key).expiresAt });
    }
  }

  async find(id) {
    return this.lookup(this.key(id));
  }

  async findByUid(uid) {
    const id = this.lookup(`SessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = this.lookup(`UserCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = this.lookup(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grantIndex.get(grantId) ?? []) store.delete(key);
    grantIndex.delete(grantId);
  }
}

// RS256 signing key, fresh for each run.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

// Default login/consent policy plus one check: a login_hint naming another
// account than the one already signed in (same cookie jar) forces a new login.
function interactionPolicyWithLoginHint() {
  const { base, Check } = interactionPolicy;
  const policy = base();
  policy.get('login').checks.add(new Check(
    'login_hint_mismatch',
    'login_hint names another account than the signed-in one',
    (ctx) => {
      const { oidc } = ctx;
      const hint = oidc.params.login_hint;
      if (hint && oidc.session.accountId && oidc.session.accountId !== hint) {
        return Check.REQUEST_PROMPT;
      }
      return Check.NO_NEED_TO_PROMPT;
    },
  ));
  return policy;
}

function configuration() {
  return {
    adapter: MemoryAdapter,
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: [signingJwk] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
    },
    responseTypes: ['code'],
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // Put the scope-requested claims into the ID token as well.
    conformIdTokenClaims: false,
    pkce: {
      methods: ['S256'],
      required: () => true,
    },
    features: {
      devInteractions: { enabled: false },
    },
    interactions: {
      policy: interactionPolicyWithLoginHint(),
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    async findAccount(ctx, sub) {
      if (!knownAccount(sub)) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { ...users[sub], sub };
        },
      };
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    clientBasedCORS: () => true,
    async renderError(ctx, out) {
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n') + '\n';
    },
  };
}

// Automatic interaction: sign in `login_hint` and consent to what was asked.
async function handleInteraction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { params, prompt, session } = details;
  const accountId = prompt.name === 'login' ? params.login_hint : session?.accountId;

  if (!knownAccount(accountId)) {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: params.login_hint ? 'unknown login_hint' : 'login_hint is required',
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (prompt.name === 'login' && session?.accountId && session.accountId !== accountId) {
    // Another account is signed in with this cookie jar. oidc-provider would
    // answer the switch with a self-submitting logout form (a browser-only
    // step), so end the old session here and detach it from the interaction.
    const old = session.cookie
      ? await provider.Session.find(session.cookie)
      : await provider.Session.findByUid(session.uid);
    await old?.destroy();
    delete details.session;
    await details.persist();
  }

  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  if (typeof params.scope === 'string') grant.addOIDCScope(params.scope);
  if (prompt.details?.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details?.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();

  const result = { consent: { grantId } };
  if (prompt.name === 'login') result.login = { accountId };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

let handler = (req, res) => {
  res.writeHead(503, { 'content-type': 'text/plain' }).end('starting\n');
};
const server = http.createServer((req, res) => handler(req, res));
server.on('error', (err) => fail(`server error: ${err.message}`));

async function start() {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  // Static clients are validated lazily; do it now so bad settings fail fast.
  try {
    await provider.Client.find(clientId);
  } catch (err) {
    fail(`invalid client settings: ${err.error_description ?? err.message}`);
  }

  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`oidc-provider server_error: ${err?.stack ?? err}\n`);
  });
  if (debug) {
    for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'jwks.error', 'discovery.error']) {
      provider.on(event, (ctx, err) => {
        process.stderr.write(`oidc-provider ${event}: ${err?.error ?? ''} ${err?.error_description ?? err?.message ?? ''}${err?.error_detail ? ` (${err.error_detail})` : ''}\n`);
      });
    }
  }

  const callback = provider.callback();
  handler = (req, res) => {
    const { pathname } = new URL(req.url, issuer);
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(pathname)) {
      handleInteraction(provider, req, res).catch((err) => {
        const status = err.statusCode ?? 500;
        if (status >= 500) process.stderr.write(`interaction failed: ${err.stack ?? err}\n`);
        if (!res.headersSent) {
          res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
        }
        res.end(`error: ${err.error ?? 'server_error'}\nerror_description: ${err.error_description ?? err.message}\n`);
      });
      return;
    }
    callback(req, res);
  };

  process.stdout.write(`listening ${issuer}\n`);
}

server.listen(port, '127.0.0.1', () => {
  start().catch((err) => fail(`start-up failed: ${err.stack ?? err}`));
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
