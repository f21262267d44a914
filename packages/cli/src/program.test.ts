import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Event, Host, Instance, Operation } from '@floe/api';
import { FloeApiError, type FloeClient, type FloeClientOptions } from '@floe/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configPath, loadConfig, saveContext } from './config.js';
import { age, mib, renderTable } from './output.js';
import { labelPatch } from './parse.js';
import { run } from './program.js';
import { OutputBuffer as Buf } from './testing.js';

const NOW = Date.parse('2025-01-02T00:00:00.000Z');

interface Call {
  method: string;
  args: unknown[];
}

type Responses = Record<string, (...args: any[]) => unknown>;

/** A fake FloeClient that records every call and answers from `responses`. */
function fakeClient(responses: Responses, calls: Call[]): FloeClient {
  const answer = (method: string, args: unknown[]): unknown => {
    calls.push({ method, args });
    const r = responses[method];
    if (r !== undefined) return r(...args);
    if (method.endsWith('.list') || method.endsWith('.history'))
      return Promise.resolve({ items: [], next_cursor: null });
    if (method.endsWith('.listAll')) return Promise.resolve([]);
    return Promise.resolve(undefined);
  };
  const group = (name: string): unknown =>
    new Proxy(
      {},
      {
        get: (_t, prop) =>
          prop === 'then' ? undefined : (...args: unknown[]) => answer(`${name}.${String(prop)}`, args),
      },
    );
  return new Proxy(
    {},
    {
      get: (_t, prop) => {
        if (prop === 'then') return undefined;
        if (prop === 'close') return () => Promise.resolve();
        if (prop === 'health') return (...args: unknown[]) => answer('health', args);
        return group(String(prop));
      },
    },
  ) as FloeClient;
}

let dir: string;
let cfg: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'floe-cli-test-'));
  cfg = join(dir, 'config.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface RunResult {
  code: number;
  out: string;
  err: string;
  calls: Call[];
  clients: FloeClientOptions[];
}

async function floe(
  argv: string[],
  opts: {
    responses?: Responses;
    env?: Record<string, string>;
    confirm?: (q: string) => Promise<boolean>;
    tty?: boolean;
    realClient?: boolean;
  } = {},
): Promise<RunResult> {
  const calls: Call[] = [];
  const clients: FloeClientOptions[] = [];
  const out = new Buf(opts.tty === true);
  const err = new Buf();
  const code = await run(argv, {
    ...(opts.realClient === true
      ? {}
      : {
          createClient: (o: FloeClientOptions) => {
            clients.push(o);
            return fakeClient(opts.responses ?? {}, calls);
          },
        }),
    stdout: out,
    stderr: err,
    env: { FLOE_CONFIG: cfg, FLOE_URL: 'http://127.0.0.1:1', FLOE_TOKEN: 'tok-secret', ...opts.env },
    stdinIsTTY: false,
    now: () => NOW,
    ...(opts.confirm === undefined ? {} : { confirm: opts.confirm }),
  });
  return { code, out: out.text, err: err.text, calls, clients };
}

function instance(over: Partial<Instance> = {}): Instance {
  return {
    id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    name: 'web',
    project: 'shop',
    labels: {},
    metadata: {},
    revision: 1,
    created_at: '2025-01-01T22:00:00.000Z',
    updated_at: '2025-01-01T22:00:00.000Z',
    spec: {
      image: 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      machine_type: 'small',
      vcpus: 2,
      memory_mib: 2048,
      disk_gib: 10,
      user_data: null,
      vendor_data: null,
      config_drive: true,
      ssh_keys: [],
      power_state: 'running',
      restart_policy: 'never',
    },
    status: {
      state: 'running',
      host: 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      reason: null,
      accelerator: 'tcg',
      observed_revision: 1,
      started_at: null,
      stopped_at: null,
      first_boot: { source: null, fetched_at: null, finished_at: null, result: null, detail: null },
    },
    ...over,
  };
}

function op(over: Partial<Operation> = {}): Operation {
  return {
    id: 'op_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    project: 'shop',
    kind: 'instance.start',
    status: 'pending',
    progress: 0,
    message: '',
    resources: [{ kind: 'instance', id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3', name: 'web' }],
    error: null,
    created_by: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    created_at: '2025-01-01T23:59:00.000Z',
    updated_at: '2025-01-01T23:59:00.000Z',
    finished_at: null,
    ...over,
  };
}

describe('commands call the client', () => {
  it('instance create maps flags to the request body', async () => {
    const keyFile = join(dir, 'id.pub');
    writeFileSync(keyFile, '# mine\nssh-ed25519 AAAAC3Nza one@host\n\necdsa-sha2-nistp256 AAAAE2 two@host\n');
    const userData = join(dir, 'init.sh');
    writeFileSync(userData, '#!/bin/sh\necho hi\n');
    const r = await floe(
      [
        'vm',
        'create',
        'web',
        '--image',
        'debian-12',
        '--type',
        'small',
        '--label',
        'env=prod',
        '--label',
        'tier=web,team=a',
        '--ssh-key',
        'ssh-rsa AAAAB3 x@y',
        '--ssh-key',
        keyFile,
        '--user-data',
        userData,
        '--no-start',
        '--restart-policy',
        'always',
        '--disk-gib',
        '20',
        '-p',
        'shop',
      ],
      {
        responses: {
          'instances.create': () =>
            Promise.resolve({ instance: instance(), operation: op({ kind: 'instance.create' }) }),
        },
      },
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([
      {
        method: 'instances.create',
        args: [
          {
            name: 'web',
            project: 'shop',
            image: 'debian-12',
            machine_type: 'small',
            disk_gib: 20,
            user_data: '#!/bin/sh\necho hi\n',
            ssh_keys: ['ssh-rsa AAAAB3 x@y', 'ssh-ed25519 AAAAC3Nza one@host', 'ecdsa-sha2-nistp256 AAAAE2 two@host'],
            labels: { env: 'prod', tier: 'web', team: 'a' },
            start: false,
            restart_policy: 'always',
          },
        ],
      },
    ]);
    expect(r.out).toContain('instance web created (inst_01JB8X0Q3E6M2T9K4V7W5YB1C3)');
    expect(r.clients[0]).toMatchObject({ url: 'http://127.0.0.1:1', token: 'tok-secret' });
  });

  it('instance create takes vendor-data and --no-config-drive, and refuses --wait-boot with --no-start', async () => {
    const vendor = join(dir, 'vendor.yaml');
    writeFileSync(vendor, '#cloud-config\ntimezone: UTC\n');
    const r = await floe(
      ['vm', 'create', 'web', '--image', 'debian-12', '--type', 'small', '--vendor-data', vendor, '--no-config-drive'],
      {
        responses: {
          'instances.create': () =>
            Promise.resolve({ instance: instance(), operation: op({ kind: 'instance.create' }) }),
        },
      },
    );
    expect(r.code).toBe(0);
    expect(r.calls[0]?.args[0]).toEqual({
      name: 'web',
      image: 'debian-12',
      machine_type: 'small',
      vendor_data: '#cloud-config\ntimezone: UTC\n',
      config_drive: false,
    });
    const bad = await floe([
      'vm',
      'create',
      'web',
      '--image',
      'debian-12',
      '--type',
      'small',
      '--no-start',
      '--wait-boot',
      '60',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--wait-boot needs the instance started');
    expect(bad.calls).toEqual([]);
    const missing = await floe([
      'vm',
      'create',
      'web',
      '--image',
      'debian-12',
      '--type',
      'small',
      '--vendor-data',
      join(dir, 'nope.yaml'),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('cannot read vendor-data file');
  });

  it('passes the project, force and label changes through', async () => {
    const stop = await floe(['instance', 'stop', 'web', '--force', '--project', 'shop'], {
      responses: { 'instances.stop': () => Promise.resolve(op({ kind: 'instance.stop' })) },
    });
    expect(stop.code).toBe(0);
    expect(stop.calls).toEqual([{ method: 'instances.stop', args: ['web', { project: 'shop', force: true }] }]);
    expect(stop.out).toContain('operation op_01JB8X0Q3E6M2T9K4V7W5YB1C3 pending');

    const label = await floe(['project', 'label', 'shop', 'env=prod', 'old-'], {
      responses: { 'projects.update': () => Promise.resolve({ name: 'shop', labels: { team: 'web', env: 'prod' } }) },
    });
    expect(label.calls).toEqual([
      { method: 'projects.update', args: ['shop', { labels: { env: 'prod', old: null } }] },
    ]);
    expect(label.code).toBe(0);
    expect(label.out).toBe('project shop: team=web,env=prod\n');
    expect(label.err).toBe('');
    const kept = await floe(['project', 'label', 'shop', 'old-'], {
      responses: { 'projects.update': () => Promise.resolve({ name: 'shop', labels: { old: '' } }) },
    });
    expect(kept.err).toMatch(/kept label\(s\) old/);

    const ls = await floe(['vm', 'ls', '--label', 'env=prod', '--label', 'tier', '--all-pages'], {
      env: { FLOE_PROJECT: 'shop' },
    });
    expect(ls.calls[0]).toEqual({
      method: 'instances.listAll',
      args: [{ project: 'shop', label: ['env=prod', 'tier'] }],
    });

    const drain = await floe(['host', 'drain', 'node-2'], {
      responses: { 'hosts.update': () => Promise.resolve({ name: 'node-2' }) },
    });
    expect(drain.calls).toEqual([{ method: 'hosts.update', args: ['node-2', { spec: { schedulable: false } }] }]);
  });

  it('token create sends every --project and prints the secret once, with a warning', async () => {
    const r = await floe(['token', 'create', 'ci', '--project', 'a', '--project', 'b,c', '--expires-in-days', '30'], {
      responses: {
        'tokens.create': () =>
          Promise.resolve({ token: { id: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3', name: 'ci' }, secret: 'floe_s3cret' }),
      },
    });
    expect(r.code).toBe(0);
    expect(r.calls[0]?.args[0]).toEqual({ name: 'ci', projects: ['a', 'b', 'c'], expires_in_days: 30 });
    expect(r.out).toContain('secret: floe_s3cret');
    expect(r.err).toMatch(/shown only now/);
  });

  it('host join-token prints the exact agent command', async () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const r = await floe(['host', 'join-token', '--expires-in-minutes', '30', '--name', 'node-2'], {
      env: { FLOE_URL: 'https://floe.example:8443', FLOE_CA: ca },
      responses: {
        'hosts.joinToken': () =>
          Promise.resolve({
            id: 'join_01JB8X0Q3E6M2T9K4V7W5YB1C3',
            token: 'jt_abc',
            expires_at: '2025-01-02T00:30:00.000Z',
          }),
      },
    });
    expect(r.code).toBe(0);
    expect(r.calls[0]).toEqual({ method: 'hosts.joinToken', args: [{ expires_in_minutes: 30 }] });
    expect(r.out).toContain(
      `floe-agent --server https://floe.example:8443 --join-token jt_abc --name node-2 --ca ${ca}`,
    );
    expect(r.clients[0]?.ca).toContain('BEGIN CERTIFICATE');
  });

  it('instance rm asks first, and needs --yes without a terminal', async () => {
    const noTty = await floe(['vm', 'rm', 'web']);
    expect(noTty.code).toBe(2);
    expect(noTty.calls).toEqual([]);
    const declined = await floe(['vm', 'rm', 'web'], { confirm: () => Promise.resolve(false) });
    expect(declined.code).toBe(1);
    expect(declined.calls).toEqual([]);
    const yes = await floe(['vm', 'rm', 'web', '--yes'], {
      responses: { 'instances.delete': () => Promise.resolve(op({ kind: 'instance.delete' })) },
    });
    expect(yes.code).toBe(0);
    expect(yes.calls).toEqual([{ method: 'instances.delete', args: ['web', { project: undefined }] }]);
  });

  it('network rm asks first, and needs --yes without a terminal, as instance rm does', async () => {
    const noTty = await floe(['net', 'rm', 'lan']);
    expect(noTty.code).toBe(2);
    expect(noTty.err).toMatch(/refusing to delete network lan without --yes/);
    expect(noTty.calls).toEqual([]);
    const declined = await floe(['net', 'rm', 'lan'], { confirm: () => Promise.resolve(false) });
    expect(declined.code).toBe(1);
    expect(declined.calls).toEqual([]);
    const yes = await floe(['net', 'rm', 'lan', '--yes'], {
      responses: { 'networks.delete': () => Promise.resolve(undefined) },
    });
    expect(yes.code).toBe(0);
    expect(yes.calls).toEqual([{ method: 'networks.delete', args: ['lan', { project: undefined }] }]);
  });
});

describe('exit codes', () => {
  it('usage errors exit 2 without calling the API', async () => {
    for (const argv of [
      ['vm', 'lss'],
      ['vm', 'ls', '--bogus'],
      ['vm', 'show'],
      ['vm', 'create', 'web', '--image', 'x', '--vcpus', 'two', '--memory-mib', '512'],
      ['vm', 'create', 'web', '--image', 'x', '--type', 'm1', '--vcpus', '2', '--memory-mib', '512'],
      ['vm', 'create', 'Bad_Name', '--image', 'x'],
      ['vm', 'create', 'web'],
      ['-o', 'yaml', 'vm', 'ls'],
      ['project', 'create', 'shop', '--label', 'no-equals'],
      ['vm'],
    ]) {
      const r = await floe(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.calls, argv.join(' ')).toEqual([]);
      expect(r.err, argv.join(' ')).toMatch(/error|Usage/);
    }
  });

  it('help and version exit 0', async () => {
    const help = await floe(['vm', 'create', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Examples:');
    expect(help.out).toContain('--restart-policy');
    expect((await floe(['--version'])).code).toBe(0);
    expect((await floe(['help', 'vm'])).code).toBe(0);
  });

  it('API errors exit 1 and print the message and code', async () => {
    const r = await floe(['vm', 'show', 'nope'], {
      responses: {
        'instances.get': () =>
          Promise.reject(
            new FloeApiError({ status: 404, code: 'instance_not_found', message: 'instance "nope" not found' }),
          ),
      },
    });
    expect(r.code).toBe(1);
    expect(r.err).toBe('error: instance "nope" not found (instance_not_found)\n');
    expect(r.out).toBe('');
  });

  it('not being logged in is a failure with a hint', async () => {
    const r = await floe(['vm', 'ls'], { env: { FLOE_URL: '', FLOE_TOKEN: '' } });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/floe login .*\(not_logged_in\)/);
  });
});

describe('--wait', () => {
  it('prints progress lines and exits 1 with the error of a failed operation', async () => {
    const failed = op({
      status: 'failed',
      progress: 40,
      message: 'starting',
      error: { code: 'host_offline', message: 'host node-1 is not connected' },
    });
    let waitedWith: unknown;
    const r = await floe(['vm', 'start', 'web', '--wait'], {
      responses: {
        'instances.start': () => Promise.resolve(op()),
        'operations.wait': (o: Operation, opts: { onUpdate: (x: Operation) => void }) => {
          waitedWith = o;
          opts.onUpdate(op({ status: 'running', progress: 40, message: 'starting' }));
          opts.onUpdate(failed);
          return Promise.resolve(failed);
        },
      },
    });
    expect(waitedWith).toEqual(op());
    expect(r.code).toBe(1);
    expect(r.out).toBe(
      'op_01JB8X0Q3E6M2T9K4V7W5YB1C3 instance.start pending 0%\n' +
        'op_01JB8X0Q3E6M2T9K4V7W5YB1C3 instance.start running 40% starting\n' +
        'op_01JB8X0Q3E6M2T9K4V7W5YB1C3 instance.start failed 40% starting\n',
    );
    expect(r.err).toBe('error: instance.start failed: host node-1 is not connected (host_offline)\n');
  });

  it('shows a progress bar on a terminal and the outcome at the end', async () => {
    const done = op({ status: 'succeeded', progress: 100, message: 'running' });
    const r = await floe(['vm', 'restart', 'web', '--wait'], {
      tty: true,
      env: { NO_COLOR: '1' },
      responses: {
        'instances.restart': () => Promise.resolve(op()),
        'operations.wait': (_o: Operation, opts: { onUpdate: (x: Operation) => void; pollSeconds: number }) => {
          expect(opts.pollSeconds).toBeLessThanOrEqual(5);
          opts.onUpdate(op({ status: 'running', progress: 50, message: 'booting' }));
          opts.onUpdate(done);
          return Promise.resolve(done);
        },
      },
    });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('instance.start [');
    expect(r.out.endsWith('instance.start succeeded: running\n')).toBe(true);
  });

  it('with -o json prints only the final operation', async () => {
    const done = op({ kind: 'instance.create', status: 'succeeded', progress: 100 });
    const r = await floe(['-o', 'json', 'vm', 'create', 'web', '--image', 'debian-12', '--type', 'small', '--wait'], {
      responses: {
        'instances.create': () => Promise.resolve({ instance: instance(), operation: op({ kind: 'instance.create' }) }),
        'operations.wait': (_o: Operation, opts: { onUpdate: (x: Operation) => void }) => {
          opts.onUpdate(done);
          return Promise.resolve(done);
        },
      },
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(done);
  });
});

describe('output', () => {
  it('renders the instance table with host and image names, and raw JSON with -o json', async () => {
    const page = {
      items: [instance(), instance({ name: 'db', status: { ...instance().status, state: 'stopped', host: null } })],
      next_cursor: 'next',
    };
    const host = { id: 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3', name: 'node-1' } as Host;
    const responses: Responses = {
      'instances.list': () => Promise.resolve(page),
      'hosts.listAll': () => Promise.resolve([host]),
      'images.listAll': () => Promise.resolve([{ id: 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3', name: 'debian-12' }]),
    };
    const table = await floe(['vm', 'ls'], { responses });
    expect(table.code).toBe(0);
    const lines = table.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+STATE\s+HOST\s+VCPUS\s+MEMORY\s+IMAGE\s+AGE$/);
    expect(lines[1]).toMatch(/^web\s+running\s+node-1\s+2\s+2 GiB\s+debian-12\s+2h$/);
    expect(lines[2]).toMatch(/^db\s+stopped\s+-\s+2\s+2 GiB\s+debian-12\s+2h$/);
    expect(table.err).toContain('--all-pages');

    const json = await floe(['vm', 'ls', '-o', 'json'], { responses });
    expect(JSON.parse(json.out)).toEqual(page);
    expect(json.calls.map((c) => c.method)).toEqual(['instances.list']);
  });

  it('events prints one line per event, or one JSON object per line', async () => {
    const events: Event[] = [
      {
        seq: 1,
        id: 'evt_01JB8X0Q3E6M2T9K4V7W5YB1C1',
        time: '2025-01-01T00:00:01.000Z',
        type: 'instance.state',
        project: 'shop',
        kind: 'instance',
        resource_id: 'inst_1',
        data: { name: 'web', state: 'running' },
        actor: null,
      },
      {
        seq: 2,
        id: 'evt_01JB8X0Q3E6M2T9K4V7W5YB1C2',
        time: '2025-01-01T00:00:02.000Z',
        type: 'operation.updated',
        project: 'shop',
        kind: 'operation',
        resource_id: 'op_1',
        data: { status: 'running', progress: 50, message: 'booting' },
        actor: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      },
    ];
    const responses: Responses = {
      'events.stream': async function* () {
        yield* events;
      },
    };
    const table = await floe(['events', '--kind', 'instance', '--kind', 'operation', '--since', '0', '-p', 'shop'], {
      responses,
    });
    expect(table.code).toBe(0);
    expect(table.calls[0]?.args[0]).toEqual({ project: 'shop', kind: ['instance', 'operation'], since: 0 });
    expect(table.out).toBe(
      '2025-01-01T00:00:01.000Z instance.state instance web/inst_1 state=running\n' +
        '2025-01-01T00:00:02.000Z operation.updated operation op_1 status=running 50% booting by=tok_01JB8X0Q3E6M2T9K4V7W5YB1C3\n',
    );
    const json = await floe(['events', '-o', 'json'], { responses });
    expect(
      json.out
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as Event),
    ).toEqual(events);
  });

  it('formats tables, sizes and ages', () => {
    expect(
      renderTable(
        ['A', 'LONGER'],
        [
          ['x', null],
          ['yyyy', 3],
        ],
      ),
    ).toBe('A      LONGER\nx      -\nyyyy   3\n');
    expect(mib(512)).toBe('512 MiB');
    expect(mib(1536)).toBe('1.5 GiB');
    expect(age('2025-01-01T23:59:30.000Z', NOW)).toBe('30s');
    expect(age('2024-12-20T00:00:00.000Z', NOW)).toBe('13d');
    expect(labelPatch(['a=1', 'b-'])).toEqual({ a: '1', b: null });
  });
});

describe('with the real client', () => {
  it('talks HTTP to a server and prints its answer', async () => {
    const seen: IncomingMessage[] = [];
    const server = createServer((req, res) => {
      seen.push(req);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          items: [{ name: 'small', spec: { vcpus: 1, memory_mib: 1024, disk_gib: 10 }, builtin: true }],
          next_cursor: null,
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const r = await floe(['type', 'ls', '--limit', '5'], {
        realClient: true,
        env: { FLOE_URL: `http://127.0.0.1:${port}`, FLOE_TOKEN: 'tok-9' },
      });
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^NAME\s+VCPUS\s+MEMORY\s+DISK\s+BUILTIN\nsmall\s+1\s+1 GiB\s+10 GiB\s+yes\n$/);
      expect(seen[0]?.url).toBe('/v1/machine-types?limit=5');
      expect(seen[0]?.headers.authorization).toBe('Bearer tok-9');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('config', () => {
  it('login checks the server, saves a 0600 context, and later commands use it', async () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const env = { FLOE_URL: '', FLOE_TOKEN: '' };
    const login = await floe(
      ['login', 'https://floe.example:8443', '--token', 'tok-1', '--ca', ca, '--context', 'prod', '--project', 'shop'],
      {
        env,
        responses: { health: () => Promise.resolve({ status: 'ok', version: '0.1.0' }) },
      },
    );
    expect(login.err).toBe('');
    expect(login.code).toBe(0);
    expect(login.calls.map((c) => c.method)).toEqual(['health', 'projects.list', 'projects.get']);
    expect(login.clients[0]).toMatchObject({ url: 'https://floe.example:8443', token: 'tok-1' });
    expect(statSync(cfg).mode & 0o777).toBe(0o600);
    expect(loadConfig(cfg)).toEqual({
      current: 'prod',
      contexts: { prod: { url: 'https://floe.example:8443', token: 'tok-1', ca_file: ca, project: 'shop' } },
    });

    const ls = await floe(['vm', 'ls'], { env });
    expect(ls.clients[0]).toMatchObject({ url: 'https://floe.example:8443', token: 'tok-1' });
    expect(ls.clients[0]?.ca).toContain('BEGIN CERTIFICATE');
    expect(ls.calls[0]?.args[0]).toEqual({ project: 'shop' });

    // The environment beats the file; flags beat the environment.
    const over = await floe(['vm', 'ls', '-p', 'other'], {
      env: { FLOE_URL: 'http://127.0.0.1:9', FLOE_TOKEN: 'tok-2', FLOE_PROJECT: 'envp' },
    });
    expect(over.clients[0]).toMatchObject({ url: 'http://127.0.0.1:9', token: 'tok-2' });
    expect(over.calls[0]?.args[0]).toEqual({ project: 'other' });

    const ctxs = await floe(['context', 'ls', '-o', 'json'], { env });
    expect(ctxs.out).not.toContain('tok-1');
    expect(JSON.parse(ctxs.out)).toEqual([
      { name: 'prod', current: true, url: 'https://floe.example:8443', project: 'shop', ca_file: ca },
    ]);
  });

  it('a failed login saves nothing', async () => {
    const r = await floe(['login', 'http://127.0.0.1:9', '--token', 'bad'], {
      env: { FLOE_URL: '', FLOE_TOKEN: '' },
      responses: {
        health: () => Promise.resolve({ status: 'ok', version: '0.1.0' }),
        'projects.list': () =>
          Promise.reject(new FloeApiError({ status: 401, code: 'unauthenticated', message: 'unknown token' })),
      },
    });
    expect(r.code).toBe(1);
    expect(r.err).toBe('error: unknown token (unauthenticated)\n');
    expect(() => statSync(cfg)).toThrow();
  });

  it('saveContext, context use and context rm round-trip the file', async () => {
    saveContext(
      'local',
      { url: 'https://127.0.0.1:8443', token: 't1', ca: '-----BEGIN CERTIFICATE-----\n' },
      { path: cfg },
    );
    saveContext('lab', { url: 'http://10.0.0.1:8080', token: 't2' }, { path: cfg, makeCurrent: false });
    expect(loadConfig(cfg).current).toBe('local');
    expect(statSync(cfg).mode & 0o777).toBe(0o600);

    const env = { FLOE_URL: '', FLOE_TOKEN: '' };
    expect((await floe(['context', 'use', 'lab'], { env })).code).toBe(0);
    expect(loadConfig(cfg).current).toBe('lab');
    const ls = await floe(['context', 'ls'], { env });
    expect(ls.out).toMatch(/^\*\s+lab\s+http:\/\/10\.0\.0\.1:8080/m);
    expect((await floe(['context', 'use', 'nope'], { env })).code).toBe(1);
    // --context picks a saved context for one command, with its inline CA.
    const one = await floe(['--context', 'local', 'type', 'ls'], { env });
    expect(one.clients[0]).toMatchObject({
      url: 'https://127.0.0.1:8443',
      token: 't1',
      ca: '-----BEGIN CERTIFICATE-----\n',
    });
    expect((await floe(['context', 'rm', 'lab'], { env })).code).toBe(0);
    expect(loadConfig(cfg)).toEqual({
      contexts: { local: { url: 'https://127.0.0.1:8443', token: 't1', ca: '-----BEGIN CERTIFICATE-----\n' } },
    });
    expect(statSync(cfg).mode & 0o777).toBe(0o600);
    expect(readFileSync(cfg, 'utf8').endsWith('\n')).toBe(true);
  });

  it('finds the file through FLOE_CONFIG, XDG_CONFIG_HOME or HOME', () => {
    expect(configPath({ FLOE_CONFIG: '/etc/floe.json' })).toBe('/etc/floe.json');
    expect(configPath({ XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/x/floe/config.json');
    expect(configPath({ HOME: '/h' })).toBe('/h/.config/floe/config.json');
  });
});

describe('networks', () => {
  it('net create maps flags to the body, net ls prints a table, help has examples', async () => {
    const created = await floe(
      [
        'net',
        'create',
        'lan',
        '--ipv4',
        '10.10.0.0/24',
        '--ipv6',
        'auto',
        '--gateway',
        'host',
        '--reserve',
        '10.10.0.9',
        '-p',
        'shop',
      ],
      {
        responses: {
          'networks.create': (body: any) =>
            Promise.resolve({
              id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
              name: body.name,
              vni: 77,
              spec: { ipv4: body.ipv4, ipv6: 'fd12:3456:789a::/64' },
            }),
        },
      },
    );
    expect(created.err).toBe('');
    expect(created.code).toBe(0);
    expect(created.calls).toEqual([
      {
        method: 'networks.create',
        args: [
          {
            name: 'lan',
            project: 'shop',
            ipv4: '10.10.0.0/24',
            ipv6: 'auto',
            gateway: 'host',
            reserved: ['10.10.0.9'],
          },
        ],
      },
    ]);
    expect(created.out).toBe(
      'network lan created (net_01JB8X0Q3E6M2T9K4V7W5YB1C3, vni 77, 10.10.0.0/24, fd12:3456:789a::/64)\n',
    );

    const pub = await floe([
      'network',
      'create',
      'internet',
      '--public',
      '--ipv4',
      '198.51.100.0/24',
      '--gateway',
      '198.51.100.1',
      '--pool',
      '198.51.100.10-198.51.100.99',
      '--uplink',
      'eth0',
      '--no-dns',
      '--mtu',
      '1500',
    ]);
    expect(pub.calls[0]!.args[0]).toEqual({
      name: 'internet',
      kind: 'public',
      ipv4: '198.51.100.0/24',
      gateway: '198.51.100.1',
      mtu: 1500,
      dns: false,
      pool: { start: '198.51.100.10', end: '198.51.100.99' },
      uplink: 'eth0',
    });
    expect((await floe(['net', 'create', 'x', '--pool', '1.2.3.4'])).code).toBe(2);

    const net = {
      id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      name: 'lan',
      project: 'shop',
      vni: 77,
      created_at: '2025-01-01T22:00:00.000Z',
      spec: { kind: 'private', ipv4: '10.10.0.0/24', ipv6: null, gateway: 'host', mtu: 1450 },
      status: { nics: 3, hosts: ['h1', 'h2'] },
    };
    const ls = await floe(['net', 'ls'], {
      responses: { 'networks.list': () => Promise.resolve({ items: [net], next_cursor: null }) },
    });
    expect(ls.out.split('\n')[0]).toMatch(/^NAME\s+KIND\s+IPV4\s+IPV6\s+GATEWAY\s+VNI\s+MTU\s+NICS\s+HOSTS\s+AGE$/);
    expect(ls.out.split('\n')[1]).toMatch(/^lan\s+private\s+10\.10\.0\.0\/24\s+-\s+host\s+77\s+1450\s+3\s+2\s+2h$/);

    const help = await floe(['net', 'create', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Examples:');
    expect(help.out).toContain('--gateway <gw>');
  });

  it('vm create --network and net attach/detach call the client', async () => {
    const r = await floe(
      [
        'vm',
        'create',
        'web',
        '--image',
        'img',
        '--type',
        'small',
        '--network',
        'lan',
        '--network',
        'dmz=10.20.0.5,fd00::5',
      ],
      {
        responses: {
          'instances.create': () =>
            Promise.resolve({ instance: instance(), operation: op({ kind: 'instance.create' }) }),
        },
      },
    );
    expect(r.code).toBe(0);
    expect((r.calls[0]!.args[0] as { networks: unknown }).networks).toEqual([
      'lan',
      { network: 'dmz', ipv4: '10.20.0.5', ipv6: 'fd00::5' },
    ]);

    const nic = {
      id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      index: 1,
      network_name: 'lan',
      mac: '02:aa:bb:cc:dd:ee',
      ipv4: '10.10.0.7',
      ipv6: null,
    };
    const a = await floe(['net', 'attach', 'web', 'lan', '--ipv4', '10.10.0.7', '-p', 'shop'], {
      responses: { 'instances.addNic': () => Promise.resolve({ nic, operation: op({ kind: 'instance.nic-add' }) }) },
    });
    expect(a.calls).toEqual([
      { method: 'instances.addNic', args: ['web', { network: 'lan', ipv4: '10.10.0.7' }, { project: 'shop' }] },
    ]);
    expect(a.out).toContain('NIC nic_01JB8X0Q3E6M2T9K4V7W5YB1C3 (02:aa:bb:cc:dd:ee, 10.10.0.7, -) added to web');
    const d = await floe(['net', 'detach', 'web', nic.id], {
      responses: { 'instances.removeNic': () => Promise.resolve(op({ kind: 'instance.nic-remove' })) },
    });
    expect(d.calls).toEqual([{ method: 'instances.removeNic', args: ['web', nic.id, { project: undefined }] }]);
    // By network: the instance's only NIC there; none or several is a usage error that says what to do.
    const byNet = await floe(['net', 'detach', 'web', 'lan'], {
      responses: {
        'instances.nics': () => Promise.resolve([nic]),
        'instances.removeNic': () => Promise.resolve(op({ kind: 'instance.nic-remove' })),
      },
    });
    expect(byNet.calls.map((c) => c.method)).toEqual(['instances.nics', 'instances.removeNic']);
    expect(byNet.calls[1]!.args[1]).toBe(nic.id);
    const none = await floe(['net', 'detach', 'web', 'dmz'], {
      responses: { 'instances.nics': () => Promise.resolve([nic]) },
    });
    expect([none.code, none.err]).toEqual([2, expect.stringContaining('web has no NIC on network dmz')]);
    const two = await floe(['net', 'detach', 'web', 'lan'], {
      responses: { 'instances.nics': () => Promise.resolve([nic, { ...nic, id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C9' }]) },
    });
    expect([two.code, two.err]).toEqual([2, expect.stringContaining('name one by id')]);
    expect(two.calls.map((c) => c.method)).toEqual(['instances.nics']);

    const v6 = await floe(['net', 'create', 'v6', '--ipv4', 'none', '--ipv6', 'fd00:60::/64', '--dhcpv6']);
    expect(v6.calls[0]!.args[0]).toMatchObject({ name: 'v6', ipv4: null, ipv6: 'fd00:60::/64', dhcpv6: true });
    const l = await floe(['net', 'nics', 'web'], {
      responses: { 'instances.nics': () => Promise.resolve([{ ...nic, rate_limit: { ingress_kbps: 10_000 } }]) },
    });
    expect(l.out).toMatch(
      /^SLOT\s+ID\s+NETWORK\s+MAC\s+IPV4\s+IPV6\s+RATE LIMIT\n1\s+nic_01JB8X0Q3E6M2T9K4V7W5YB1C3\s+lan\s+02:aa:bb:cc:dd:ee\s+10\.10\.0\.7\s+-\s+in=10mbit\n$/,
    );
  });

  it('rate limits: on create, on attach, and changed with net limit', async () => {
    const created = await floe(
      [
        'vm',
        'create',
        'web',
        '--image',
        'img',
        '--type',
        'small',
        '--network',
        'lan',
        '--network',
        'dmz=10.20.0.5',
        '--rate-limit',
        '10mbit',
      ],
      {
        responses: {
          'instances.create': () =>
            Promise.resolve({ instance: instance(), operation: op({ kind: 'instance.create' }) }),
        },
      },
    );
    expect(created.code, created.err).toBe(0);
    const both = { ingress_kbps: 10_000, egress_kbps: 10_000 };
    expect((created.calls[0]!.args[0] as { networks: unknown }).networks).toEqual([
      { network: 'lan', rate_limit: both },
      { network: 'dmz', ipv4: '10.20.0.5', rate_limit: both },
    ]);
    const alone = await floe(['vm', 'create', 'web', '--image', 'img', '--type', 'small', '--rate-limit', '10mbit']);
    expect([alone.code, alone.err]).toEqual([2, expect.stringContaining('give one')]);

    const nic = {
      id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      index: 1,
      network_name: 'lan',
      mac: '02:aa:bb:cc:dd:ee',
      ipv4: '10.10.0.7',
      ipv6: null,
      rate_limit: { egress_pps: 500 },
    };
    const a = await floe(['net', 'attach', 'web', 'lan', '--rate-limit', 'out-pps=500'], {
      responses: { 'instances.addNic': () => Promise.resolve({ nic, operation: op({ kind: 'instance.nic-add' }) }) },
    });
    expect(a.calls[0]!.args[1]).toEqual({ network: 'lan', rate_limit: { egress_pps: 500 } });
    const changed = await floe(['net', 'limit', 'web', 'lan', 'in=5mbit,out-pps=500'], {
      responses: {
        'instances.nics': () => Promise.resolve([nic]),
        'instances.updateNic': () =>
          Promise.resolve({
            nic: { ...nic, rate_limit: { ingress_kbps: 5000, egress_pps: 500 } },
            operation: op({ kind: 'instance.nic-update' }),
          }),
      },
    });
    expect(changed.code, changed.err).toBe(0);
    expect(changed.calls[1]).toEqual({
      method: 'instances.updateNic',
      args: ['web', nic.id, { rate_limit: { ingress_kbps: 5000, egress_pps: 500 } }, { project: undefined }],
    });
    expect(changed.out).toContain(`NIC ${nic.id} of web: rate limit in=5mbit,out-pps=500`);
    const off = await floe(['net', 'limit', 'web', nic.id, 'none'], {
      responses: {
        'instances.updateNic': () =>
          Promise.resolve({ nic: { ...nic, rate_limit: null }, operation: op({ kind: 'instance.nic-update' }) }),
      },
    });
    expect(off.calls).toEqual([
      { method: 'instances.updateNic', args: ['web', nic.id, { rate_limit: null }, { project: undefined }] },
    ]);
    const bad = await floe(['net', 'limit', 'web', nic.id, 'fast']);
    expect([bad.code, bad.err]).toEqual([2, expect.stringContaining('not a bandwidth')]);
    expect(bad.calls).toEqual([]);
  });
});
