import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A private slapd for tests: its own config, database and port on 127.0.0.1. */
export interface TestSlapd {
  readonly url: string;
  readonly port: number;
  readonly baseDn: string;
  readonly adminDn: string;
  readonly adminPassword: string;
  /** Add entries (LDIF) as the admin, with ldapadd. */
  add(ldif: string): Promise<void>;
  /** Stop slapd (SIGTERM, then SIGKILL) and remove its directory. */
  stop(): Promise<void>;
}

const SLAPD = '/usr/sbin/slapd';
const MODULES = '/usr/lib/ldap';
const SCHEMAS = '/etc/ldap/schema';

/** Why a real slapd cannot run here (Debian's slapd and ldap-utils missing), or null. */
export function slapdMissing(): string | null {
  if (!existsSync(SLAPD)) return `${SLAPD} is missing (install Debian's slapd)`;
  if (!existsSync(`${MODULES}/back_mdb.so`)) return `${MODULES}/back_mdb.so is missing`;
  for (const tool of ['/usr/bin/ldapadd', '/usr/bin/ldapsearch'])
    if (!existsSync(tool)) return `${tool} is missing (install ldap-utils)`;
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Start slapd from a slapd.conf in a scratch directory (mdb database under
 * `baseDn`, the memberof overlay so users carry `memberOf`), in the
 * foreground as a child of the test, and wait until it answers.
 */
export async function startSlapd(baseDn = 'dc=floe,dc=test'): Promise<TestSlapd> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'floe-slapd-'));
  const dbDir = path.join(dir, 'db');
  await mkdir(dbDir);
  const adminDn = `cn=admin,${baseDn}`;
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const conf = [
    `include ${SCHEMAS}/core.schema`,
    `include ${SCHEMAS}/cosine.schema`,
    `include ${SCHEMAS}/inetorgperson.schema`,
    `include ${SCHEMAS}/nis.schema`,
    `pidfile ${dir}/slapd.pid`,
    `modulepath ${MODULES}`,
    'moduleload back_mdb',
    'moduleload memberof',
    'database mdb',
    `suffix "${baseDn}"`,
    `rootdn "${adminDn}"`,
    `rootpw ${adminPassword}`,
    `directory ${dbDir}`,
    'maxsize 10485760',
    'overlay memberof',
    'access to attrs=userPassword by self write by anonymous auth by * none',
    'access to * by * read',
    '',
  ].join('\n');
  const confFile = path.join(dir, 'slapd.conf');
  await writeFile(confFile, conf);
  const port = await freePort();
  const url = `ldap://127.0.0.1:${port}`;
  // -d keeps slapd in the foreground, so it is this process's child and dies with the test.
  const child: ChildProcess = spawn(SLAPD, ['-f', confFile, '-h', `${url}/`, '-d', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`slapd exited at start: ${stderr.slice(-2000)}`);
    try {
      await run('ldapsearch', ['-x', '-H', url, '-b', '', '-s', 'base', '-LLL', 'namingContexts'], { timeout: 2000 });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`slapd did not answer on ${url}: ${stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const add = async (ldif: string): Promise<void> => {
    const file = path.join(dir, `add-${Date.now()}-${Math.random().toString(36).slice(2)}.ldif`);
    await writeFile(file, ldif);
    await run('ldapadd', ['-x', '-H', url, '-D', adminDn, '-w', adminPassword, '-f', file], { timeout: 10_000 });
  };
  const [dc] = baseDn.split(',');
  await add(
    `dn: ${baseDn}\nobjectClass: dcObject\nobjectClass: organization\no: floe test\n${dc!.replace('=', ': ')}\n`,
  );
  return {
    url,
    port,
    baseDn,
    adminDn,
    adminPassword,
    add,
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
