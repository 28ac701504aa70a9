// An OpenID provider for Estafette's login tests: oidc-provider (OpenID
// certified) with a plain login page, over HTTPS, configured by one JSON
// file. It stands in for a national login or a foreign eID provider.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {
//   "host": "localhost",           issuer = https://<host>:<port>
//   "listen": "127.0.0.1",
//   "tls_key": PEM file, "tls_cert": PEM file,
//   "signing": { "alg": "RS256" | "PS256" | "ES256" | "EdDSA", "kid": "...",
//                "key_file": private JWK (made if missing),
//                "public_jwks_file": written with the public JWKS },
//   "clients": [{ "client_id", "client_secret", "redirect_uris": [...] }],
//   "claims": { "<scope>": ["claim", ...] },
//   "acr_values": ["..."],
//   "accounts": { "<login>": { "password", "acr", "login_age_s"?, "claims": {...} } }
// }
//
// When it listens it prints one JSON line on stdout: {"issuer": ..., "port": ...}.

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:https';
import { generateKeyPairSync, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function signingKey({ alg, kid, key_file, public_jwks_file }) {
  if (!existsSync(key_file)) {
    const kinds = {
      RS256: ['rsa', { modulusLength: 2048 }],
      PS256: ['rsa', { modulusLength: 2048 }],
      ES256: ['ec', { namedCurve: 'P-256' }],
      EdDSA: ['ed25519', {}],
    };
    const [type, options] = kinds[alg];
    const { privateKey } = generateKeyPairSync(type, options);
    writeFileSync(key_file, JSON.stringify(privateKey.export({ format: 'jwk' })), { mode: 0o600 });
  }
  const jwk = JSON.parse(readFileSync(key_file, 'utf8'));
  const publicJwk = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' });
  writeFileSync(public_jwks_file, JSON.stringify({ keys: [{ ...publicJwk, kid, alg, use: 'sig' }] }));
  return { ...jwk, kid, alg, use: 'sig' };
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, problem) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in</title></head>
<body><main><h1>Log in at ${escape(config.host)}</h1>
${problem ? `<p role="alert" id="problem">${escape(problem)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="login">User name</label> <input id="login" name="login" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password">
<button type="submit" id="submit">Log in</button>
</form></main></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 8192) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

function configuration() {
  const scopes = Object.keys(config.claims);
  return {
    clients: config.clients.map((c) => ({
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: config.signing.alg,
      require_auth_time: true,
      ...c,
    })),
    jwks: { keys: [signingKey(config.signing)] },
    claims: { acr: null, auth_time: null, iss: null, sid: null, openid: ['sub'], ...config.claims },
    scopes: ['openid', ...scopes],
    acrValues: config.acr_values,
    // The claims go into the ID token: that is what the gateway verifies.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    findAccount: async (ctx, id) => {
      const account = config.accounts[id];
      if (!account) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
    },
    // A first-party login: no consent screen, every configured scope granted.
    loadExistingGrant: async (ctx) => {
      const { provider } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return provider.Grant.find(grantId);
      const grant = new provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(['openid', ...scopes].join(' '));
      grant.addOIDCClaims(['acr', 'auth_time', ...Object.values(config.claims).flat()]);
      await grant.save();
      return grant;
    },
  };
}

function interactions(provider) {
  return async (ctx, next) => {
    const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!match) return next();
    ctx.set('cache-control', 'no-store');
    const [, uid, login] = match;
    if (!login && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = loginPage(uid);
      return undefined;
    }
    if (login && ctx.method === 'POST') {
      const form = await readForm(ctx.req);
      const id = form.get('login');
      const account = config.accounts[id];
      if (!account || account.password !== form.get('password')) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(uid, 'Unknown user name or wrong password.');
        return undefined;
      }
      const ts = Math.floor(Date.now() / 1000) - (account.login_age_s || 0);
      return provider.interactionFinished(ctx.req, ctx.res, {
        login: { accountId: id, acr: account.acr, amr: ['pwd'], ts, remember: false },
      }, { mergeWithLastSubmission: false });
    }
    return next();
  };
}

const server = createServer({
  key: readFileSync(config.tls_key),
  cert: readFileSync(config.tls_cert),
});
server.listen(config.port || 0, config.listen || '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://${config.host}:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.use(interactions(provider));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
