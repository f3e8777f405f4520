// A real OpenID provider for the tests: the certified `oidc-provider` package with its own login and
// consent pages (devInteractions). Its clients and people are read from a JSON file at each use, so a test
// registers a client for its relay's redirect URI, or changes a person's groups, by rewriting the file:
//   {"clients": {"<client_id>": {client metadata}}, "people": {"<login>": {"email", "name", "groups"}}}
// Usage: node oidc_provider.mjs FILE NODE_MODULES; prints "listening <port>" once it serves on 127.0.0.1.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// ES modules ignore NODE_PATH: the package is imported from the cache directory it was installed into
const from = (path) => import(pathToFileURL(join(process.argv[3], 'oidc-provider', path)).href);
const { default: Provider } = await from('lib/index.js');
const { default: MemoryAdapter } = await from('lib/adapters/memory_adapter.js');

const file = process.argv[2];
const read = () => JSON.parse(readFileSync(file, 'utf8'));

class Adapter extends MemoryAdapter {
  constructor(model) {
    super(model);
    this.model = model;
  }

  async find(id) {
    if (this.model === 'Client') return read().clients[id];
    return super.find(id);
  }
}

const server = (await import('node:http')).createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    adapter: Adapter,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // the claims the scopes grant go into the ID token too, where Relay reads them
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    async findAccount(ctx, id) {
      const person = read().people[id];
      if (!person) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email_verified: true, ...person };
        },
      };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(`listening ${port}`);
});
