import type { Token, TokenCreate } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';

const NOW = Date.parse('2025-01-02T00:00:00.000Z');

function token(over: Partial<Token>): Token {
  return {
    id: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    name: 'ci',
    admin: false,
    projects: ['shop'],
    state: 'active',
    created_at: '2025-01-01T00:00:00.000Z',
    expires_at: null,
    revoked_at: null,
    last_used_at: null,
    user: null,
    scope: null,
    ...over,
  };
}

/** Runs the CLI against a client whose tokens answer with `items`. */
async function floe(argv: string[], items: Token[]) {
  const asked: string[] = [];
  const created: TokenCreate[] = [];
  const listed: unknown[] = [];
  const client = {
    tokens: {
      create: (body: TokenCreate) => {
        created.push(body);
        return Promise.resolve({ token: token({ name: body.name, scope: body.scope ?? null }), secret: 'floe_s3cret' });
      },
      list: (query: unknown) => {
        listed.push(query);
        return Promise.resolve({ items, next_cursor: null });
      },
      get: (id: string) => {
        asked.push(id);
        return Promise.resolve(items.find((t) => t.id === id));
      },
    },
    close: () => Promise.resolve(),
  } as unknown as FloeClient;
  return { ...(await runWithClient(argv, client, { now: NOW })), asked, created, listed };
}

describe('floe token', () => {
  const active = token({ id: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C1', name: 'live' });
  const expired = token({
    id: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C2',
    name: 'old',
    state: 'expired',
    expires_at: '2025-01-01T12:00:00.000Z',
    projects: [],
  });

  it('ls says which tokens are expired', async () => {
    const r = await floe(['token', 'ls'], [active, expired]);
    expect(r.code, r.err).toBe(0);
    const [head, ...rows] = r.out.trimEnd().split('\n');
    expect(head).toMatch(/^ID\s+NAME\s+STATE\s+ADMIN\s+USER\s+PROJECTS\s+SCOPE\s+EXPIRES/);
    expect(rows[0]).toMatch(/^tok_\w+\s+live\s+active\s+no\s+-\s+shop\s+-\s+never/);
    // A token whose projects were all deleted holds no grant: '-', not an empty cell.
    expect(rows[1]).toMatch(/^tok_\w+\s+old\s+expired\s+no\s+-\s+-\s+-\s+2025-01-01T12:00:00.000Z/);
  });

  it('show prints one token with its state, and -o json the API shape', async () => {
    const r = await floe(['token', 'show', expired.id], [active, expired]);
    expect(r.code, r.err).toBe(0);
    expect(r.asked).toEqual([expired.id]);
    expect(r.out).toMatch(/\nold\s|\stok_\w+\s+old\s+expired\s/);
    const j = await floe(['-o', 'json', 'token', 'show', expired.id], [active, expired]);
    expect(JSON.parse(j.out)).toMatchObject({ id: expired.id, state: 'expired' });
  });

  it('ls shows each token’s scope', async () => {
    const ci = token({
      name: 'ci',
      scope: { kinds: ['instance'], resources: ['inst_01JB8X0Q3E6M2T9K4V7W5YB1C9'], verbs: ['power'] },
    });
    const r = await floe(['token', 'ls'], [active, ci]);
    expect(r.code, r.err).toBe(0);
    const [head, plain, scoped] = r.out.trimEnd().split('\n');
    expect(head).toMatch(/\sPROJECTS\s+SCOPE\s+EXPIRES\s/);
    expect(plain).toMatch(/\sshop\s+-\s+never\s/);
    expect(scoped).toContain('kinds=instance verbs=power resources=inst_01JB8X0Q3E6M2T9K4V7W5YB1C9');
  });

  it('create sends the scope of --kind, --resource and --verb (repeatable) with the projects', async () => {
    const r = await floe(
      [
        'token',
        'create',
        'ci-restart',
        '--project',
        'shop',
        '--kind',
        'instance',
        '--resource',
        'web-1',
        '--resource',
        'web-2',
        '--verb',
        'power',
        '--verb',
        'read',
        '--expires-in-days',
        '30',
      ],
      [],
    );
    expect(r.code, r.err).toBe(0);
    expect(r.created).toEqual([
      {
        name: 'ci-restart',
        projects: ['shop'],
        expires_in_days: 30,
        scope: { kinds: ['instance'], resources: ['web-1', 'web-2'], verbs: ['power', 'read'] },
      },
    ]);
    expect(r.out).toContain('secret: floe_s3cret');
    const plain = await floe(['token', 'create', 'laptop'], []);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.created).toEqual([{ name: 'laptop' }]);
  });

  it('create --help shows the scope flags with an example', async () => {
    const r = await floe(['token', 'create', '--help'], []);
    expect(r.out).toMatch(/--kind <kind>/);
    expect(r.out).toMatch(/--resource <name-or-id>/);
    expect(r.out).toMatch(/--verb <verb>/);
    expect(r.out).toContain(
      'floe token create ci-restart --project shop --kind instance --resource web-1 --verb power',
    );
  });

  it('ls --project asks for the tokens granted that project, and no project without it', async () => {
    const r = await floe(['token', 'ls', '--project', 'shop'], [active]);
    expect(r.code, r.err).toBe(0);
    expect(r.listed).toEqual([{ project: 'shop' }]);
    expect((await floe(['token', 'ls'], [active])).listed).toEqual([{}]);
    const bad = await floe(['token', 'ls', '--project', 'Not A Name'], [active]);
    expect(bad.code).not.toBe(0);
    expect(bad.listed).toEqual([]);
  });

  it('create --project-token asks for a project token, which the help says owners may create', async () => {
    const r = await floe(['token', 'create', 'deploy', '--project', 'shop', '--project-token'], []);
    expect(r.code, r.err).toBe(0);
    expect(r.created).toEqual([{ name: 'deploy', project_token: true, projects: ['shop'] }]);
    const help = await floe(['token', 'create', '--help'], []);
    expect(help.out).toMatch(/--project-token\s/);
    expect(help.out).toContain('owner of every project named, a project token with --project-token');
  });
});
