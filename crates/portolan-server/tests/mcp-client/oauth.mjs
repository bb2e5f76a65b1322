// Connects to Portolan's /mcp with the official SDK's OAuth support, as an assistant that holds
// no token: the SDK discovers the authorization server from the 401, registers itself, and
// sends the user to the consent page; this script then plays the user's browser (sign in, allow)
// and hands the code back to the SDK, which trades it for a token and connects. Prints "ok".
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const check = (ok, what) => {
  if (!ok) throw new Error(what);
};
const base = process.env.PORTOLAN_URL;
const redirectUrl = 'http://127.0.0.1:33418/callback';

class Provider {
  constructor() {
    this.saved = {};
  }
  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: 'SDK test assistant',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    return 'sdk-state';
  }
  clientInformation() {
    return this.saved.client;
  }
  saveClientInformation(client) {
    this.saved.client = client;
  }
  tokens() {
    return this.saved.tokens;
  }
  saveTokens(tokens) {
    this.saved.tokens = tokens;
  }
  redirectToAuthorization(url) {
    this.saved.authorizationUrl = url;
  }
  saveCodeVerifier(verifier) {
    this.saved.verifier = verifier;
  }
  codeVerifier() {
    return this.saved.verifier;
  }
}

const cookieOf = (response, name) =>
  response.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .find((c) => c.startsWith(`${name}=`));
const form = (fields) => ({
  method: 'POST',
  redirect: 'manual',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
});

// The user signs in to the portal, as a browser would.
async function signIn() {
  const page = await fetch(`${base}/login`);
  const login = cookieOf(page, '__Host-portolan_login');
  const csrf = login.split('=')[1];
  const signed = await fetch(`${base}/login`, {
    ...form({ username: process.env.PORTOLAN_USER, password: process.env.PORTOLAN_PASSWORD, csrf, return_to: '/' }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: login },
  });
  check(signed.status === 303, `sign-in: ${signed.status}`);
  return cookieOf(signed, '__Host-portolan_session');
}

// What the page's HTML escaping did to an attribute's value, undone.
const unescape = (text) =>
  text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#([0-9]+);/g, (_, dec) => String.fromCodePoint(Number(dec)))
    .replaceAll('&quot;', '"')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');

const provider = new Provider();
const url = new URL(`${base}/mcp`);
let refused;
try {
  await new Client({ name: 'portolan-oauth-test', version: '1.0.0' }).connect(
    new StreamableHTTPClientTransport(url, { authProvider: provider }),
  );
} catch (error) {
  refused = error;
}
check(refused instanceof UnauthorizedError, `without a token the SDK is sent to authorize: ${refused}`);
const authorizationUrl = provider.saved.authorizationUrl;
check(authorizationUrl?.pathname === '/oauth/authorize', `authorization URL: ${authorizationUrl}`);
check(authorizationUrl.searchParams.get('resource') === `${base}/mcp`, 'the SDK names the resource');

const session = await signIn();
const consent = await fetch(authorizationUrl, { headers: { cookie: session } });
const html = await consent.text();
check(consent.status === 200 && html.includes('SDK test assistant'), `consent page: ${consent.status}`);
const fields = Object.fromEntries(
  [...html.matchAll(/<input type="hidden" name="([a-z_]+)" value="([^"]*)">/g)].map(([, k, v]) => [
    k,
    unescape(v),
  ]),
);
const allowed = await fetch(`${base}/oauth/authorize`, {
  ...form({ ...fields, decision: 'allow' }),
  headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: session },
});
check(allowed.status === 303, `allow: ${allowed.status} ${await allowed.text()}`);
const back = new URL(allowed.headers.get('location'));
check(back.searchParams.get('state') === 'sdk-state', `state comes back: ${back}`);

const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
await transport.finishAuth(back.searchParams.get('code'));
check(provider.saved.tokens?.access_token?.startsWith('plt_'), 'the SDK holds a token');

const client = new Client({ name: 'portolan-oauth-test', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(url, { authProvider: provider }));
const found = await client.callTool({ name: 'search_entities', arguments: { blueprint: 'service' } });
check(!found.isError, `search as the user: ${JSON.stringify(found)}`);
const ids = found.structuredContent.entities.map((e) => e.identifier);
check(JSON.stringify(ids) === '["cart"]', `only what the user may read: ${ids}`);
await client.close();
console.log('ok');
