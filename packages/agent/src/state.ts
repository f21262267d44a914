import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from './host/files.js';

/** `agent.json`: which control plane this agent belongs to, and as which host. */
export interface AgentConfig {
  /** Base URL of the control plane, e.g. https://floe.example:8443 */
  server: string;
  host_id?: string;
  host_name: string;
}

/** The agent's TLS identity: its key and certificate, and floe's CA that verifies the server. */
export interface AgentCredentials {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** What the agent last applied for one instance; survives agent restarts. */
export interface AppliedInstance {
  revision: number;
  generation: number;
  restart_generation: number;
  /**
   * Set when the VM stopped on its own and its restart policy keeps it
   * stopped: the generation at that moment. A later start request bumps the
   * generation and lifts the hold.
   */
  halted_generation: number | null;
  /**
   * The NICs last handed to the VM driver (taps made, plugged or recorded),
   * in slot order; absent before any were. Compared with the desired NICs so
   * that a pass with nothing changed runs no `ip` command.
   */
  nics?: AppliedNic[];
}

/** One NIC as the reconciler last applied it. */
export interface AppliedNic {
  id: string;
  index: number;
  mac: string;
  /** The NIC's rate limits as applied to its tap (rateKey of nic-apply.ts); absent: none. */
  rate?: string;
}

/** Where the reconciler keeps what it applied. */
export interface AppliedStore {
  load(): Promise<Record<string, AppliedInstance>>;
  save(applied: Record<string, AppliedInstance>): Promise<void>;
}

/** An in-memory AppliedStore (tests, and agents that keep no state). */
export function memoryAppliedStore(
  initial: Record<string, AppliedInstance> = {},
): AppliedStore & { data: Record<string, AppliedInstance> } {
  const store = {
    data: structuredClone(initial),
    load: () => Promise.resolve(structuredClone(store.data)),
    save: (applied: Record<string, AppliedInstance>) => {
      store.data = structuredClone(applied);
      return Promise.resolve();
    },
  };
  return store;
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * The agent's data directory:
 * `agent.key`, `agent.crt`, `ca.crt` (its identity), `agent.json` (server and
 * host), `instances.json` (what it applied per instance).
 */
export class AgentState {
  /** Paths of every file the agent keeps. */
  readonly paths: { key: string; cert: string; ca: string; config: string; instances: string };
  private appliedWrites: Promise<void> = Promise.resolve();

  constructor(readonly dataDir: string) {
    this.paths = {
      key: join(dataDir, 'agent.key'),
      cert: join(dataDir, 'agent.crt'),
      ca: join(dataDir, 'ca.crt'),
      config: join(dataDir, 'agent.json'),
      instances: join(dataDir, 'instances.json'),
    };
  }

  /** Create the directory (mode 0700). */
  async init(): Promise<void> {
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await chmod(this.dataDir, 0o700);
  }

  /** `agent.json`, or null before the agent joined. */
  async readConfig(): Promise<AgentConfig | null> {
    const text = await readOptional(this.paths.config);
    if (text === null) return null;
    const parsed = JSON.parse(text) as Partial<AgentConfig>;
    if (typeof parsed.server !== 'string' || typeof parsed.host_name !== 'string') {
      throw new Error(`${this.paths.config} is missing "server" or "host_name"`);
    }
    return parsed as AgentConfig;
  }

  async writeConfig(config: AgentConfig): Promise<void> {
    await this.init();
    await writeJsonAtomic(this.paths.config, config, 0o600);
  }

  /** The agent's key, certificate and CA, or null when none of them exist yet. */
  async readCredentials(): Promise<AgentCredentials | null> {
    const [keyPem, certPem, caPem] = await Promise.all([
      readOptional(this.paths.key),
      readOptional(this.paths.cert),
      readOptional(this.paths.ca),
    ]);
    if (keyPem === null && certPem === null && caPem === null) return null;
    if (keyPem === null || certPem === null || caPem === null) {
      throw new Error(`incomplete agent identity in ${this.dataDir}: agent.key, agent.crt and ca.crt must all exist`);
    }
    return { keyPem, certPem, caPem };
  }

  async writeCredentials(creds: AgentCredentials): Promise<void> {
    await this.init();
    await writeFileAtomic(this.paths.key, creds.keyPem, 0o600);
    await writeFileAtomic(this.paths.ca, creds.caPem, 0o644);
    // The certificate last: its presence means the identity is complete.
    await writeFileAtomic(this.paths.cert, creds.certPem, 0o644);
  }

  /** What was applied per instance ({} when nothing was). */
  async readApplied(): Promise<Record<string, AppliedInstance>> {
    const text = await readOptional(this.paths.instances);
    if (text === null) return {};
    const parsed = JSON.parse(text) as { instances?: Record<string, Partial<AppliedInstance>> };
    const out: Record<string, AppliedInstance> = {};
    for (const [id, a] of Object.entries(parsed.instances ?? {})) {
      out[id] = {
        revision: a.revision ?? 0,
        generation: a.generation ?? 0,
        restart_generation: a.restart_generation ?? 0,
        halted_generation: a.halted_generation ?? null,
        ...(Array.isArray(a.nics) ? { nics: a.nics } : {}),
      };
    }
    return out;
  }

  /** Save what was applied; writes are queued so the last call always wins. */
  writeApplied(applied: Record<string, AppliedInstance>): Promise<void> {
    const text = `${JSON.stringify({ version: 1, instances: applied }, null, 2)}\n`;
    const write = this.appliedWrites.then(async () => {
      await this.init();
      await writeFileAtomic(this.paths.instances, text, 0o600);
    });
    this.appliedWrites = write.catch(() => undefined);
    return write;
  }

  /** The applied-state store for the reconciler, backed by `instances.json`. */
  appliedStore(): AppliedStore {
    return { load: () => this.readApplied(), save: (applied) => this.writeApplied(applied) };
  }
}
