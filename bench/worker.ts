import { Worker, type MessagePort } from 'node:worker_threads';

/** A request to a bench worker and the id its answer carries. */
interface Envelope<T> {
  id: number;
  job: T;
}

/** A worker's answer to one job. */
type Answer = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/**
 * A worker thread running a TypeScript module, with request/answer calls. The
 * module listens on `parentPort` (see `serveJobs`). Workers do not inherit the
 * `--import tsx` hook, so the module is loaded through tsx's API explicitly.
 */
export class BenchWorker<Job> {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** Why the thread is gone, once it is. */
  private dead: Error | null = null;

  constructor(moduleUrl: URL, workerData: unknown = null) {
    const tsxApi = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(tsxApi)}).then(({ tsImport }) => tsImport(${JSON.stringify(moduleUrl.href)}, ${JSON.stringify(import.meta.url)}))`;
    this.worker = new Worker(code, { eval: true, workerData });
    this.worker.on('message', (a: Answer) => {
      const p = this.pending.get(a.id);
      if (!p) return;
      this.pending.delete(a.id);
      if (a.ok) p.resolve(a.result);
      else p.reject(new Error(a.error));
    });
    this.worker.on('error', (err) => this.failAll(err));
    this.worker.on('exit', (code) => this.failAll(new Error(`bench worker exited with code ${code}`)));
  }

  /** Start a worker for `use` and stop it afterwards, whatever `use` came to. */
  static async using<Job, T>(moduleUrl: URL, use: (worker: BenchWorker<Job>) => Promise<T>): Promise<T> {
    const worker = new BenchWorker<Job>(moduleUrl);
    try {
      return await use(worker);
    } finally {
      await worker.close();
    }
  }

  /** Run one job in the worker and wait for its result. */
  call<R>(job: Job): Promise<R> {
    if (this.dead !== null) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, job } satisfies Envelope<Job>);
    });
  }

  /** Stop the thread. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }

  private failAll(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** Inside a worker: answer each job posted by `BenchWorker.call` with `handle`'s result. */
export function serveJobs<Job>(port: MessagePort, handle: (job: Job) => Promise<unknown>): void {
  port.on('message', (msg: Envelope<Job>) => {
    handle(msg.job).then(
      (result) => port.postMessage({ id: msg.id, ok: true, result } satisfies Answer),
      (err: unknown) =>
        port.postMessage({
          id: msg.id,
          ok: false,
          error: err instanceof Error ? (err.stack ?? err.message) : String(err),
        } satisfies Answer),
    );
  });
}

/**
 * Inside an agent worker: `start` and `stop` the agent; any other job goes to
 * `other` (counters, timings).
 */
export function serveAgentJobs<Job extends { kind: string }>(
  port: MessagePort,
  agent: { start(): Promise<void>; stop(): Promise<void> },
  other: (job: Job) => Promise<unknown>,
): void {
  serveJobs<Job>(port, async (job) => {
    if (job.kind === 'start') await agent.start();
    else if (job.kind === 'stop') await agent.stop();
    else return other(job);
    return null;
  });
}

/** Epoch milliseconds with sub-millisecond precision, comparable across threads. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}
