import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { FloeClient } from '@floe/client';
import { ROOT, eventually, kill, nodeArgs } from './helpers.js';

/** What `floed init --json` prints. */
interface InitResult {
  url: string;
  ca_file: string;
  admin_token: string | null;
  host: { id: string; name: string };
  agent_dir: string;
}

/**
 * A real `floed` process on a data directory (and a PostgreSQL database when `databaseUrl` is given),
 * run from source as the agents of the e2e tests are: it can be killed -9 and started again on the
 * same store, as a crashed control plane is restarted.
 */
export class FloedProcess {
  child: ChildProcess | null = null;
  url = '';
  ca = '';
  adminToken = '';
  hostId = '';
  agentDir = '';
  private out = '';
  private readonly env: NodeJS.ProcessEnv;

  constructor(opts: { dataDir: string; port: number; databaseUrl?: string; env?: Record<string, string> }) {
    this.env = {
      ...process.env,
      FLOE_DATA: opts.dataDir,
      FLOE_LISTEN: `127.0.0.1:${opts.port}`,
      FLOE_LOG_LEVEL: 'warn',
      ...(opts.databaseUrl ? { FLOE_DATABASE_URL: opts.databaseUrl } : {}),
      ...opts.env,
    };
    if (!opts.databaseUrl) delete this.env.FLOE_DATABASE_URL;
  }

  /** `floed init`: the store, the CA, the admin token (first time) and the local host's agent directory. */
  init(): InitResult {
    const r = spawnSync(process.execPath, nodeArgs('packages/server/src/main.ts', ['init', '--json']), {
      cwd: ROOT,
      env: this.env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status !== 0) throw new Error(`floed init failed: ${r.stderr}${r.stdout}`);
    const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as InitResult;
    this.url = result.url;
    this.ca = readFileSync(result.ca_file, 'utf8');
    if (result.admin_token) this.adminToken = result.admin_token;
    this.hostId = result.host.id;
    this.agentDir = result.agent_dir;
    return result;
  }

  /** Start `floed run` and wait until it answers. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, nodeArgs('packages/server/src/main.ts', ['run']), {
      cwd: ROOT,
      env: this.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout.on('data', (d) => (this.out += String(d)));
    child.stderr.on('data', (d) => (this.out += String(d)));
    const client = this.client();
    try {
      await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`floed exited ${child.exitCode}: ${this.out}`);
          return (await client.health()).status === 'ok';
        },
        'floed answering',
        60_000,
      );
    } finally {
      await client.close();
    }
  }

  /** kill -9, as a crash. */
  async crash(): Promise<void> {
    if (this.child) await kill(this.child, 'SIGKILL');
    this.child = null;
  }

  async stop(): Promise<void> {
    if (this.child) await kill(this.child, 'SIGTERM');
    this.child = null;
  }

  /** A client with the admin token. */
  client(): FloeClient {
    return new FloeClient({ url: this.url, ca: this.ca, ...(this.adminToken ? { token: this.adminToken } : {}) });
  }

  output(): string {
    return this.out;
  }
}
