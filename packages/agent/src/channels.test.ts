import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentMessage, ControlMessage, DesiredInstance } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { FakeVmDriver } from './drivers/vm/fake.js';
import { AgentChannels, chunks, dropSeen, errorBody } from './channels.js';
import { StatsSampler } from './stats-history.js';

/** A link that keeps what the channels send, with a settable send queue. */
class FakeLink {
  sent: AgentMessage[] = [];
  bufferedAmount = 0;
  send(msg: AgentMessage): boolean {
    this.sent.push(msg);
    return true;
  }
  /** Every message about one channel. */
  of(channel: string): AgentMessage[] {
    return this.sent.filter((m) => (m.type === 'channel.data' || m.type === 'channel.closed') && m.channel === channel);
  }
  /** The bytes of a channel, decoded and joined. */
  bytes(channel: string): string {
    return Buffer.concat(
      this.of(channel).flatMap((m) => (m.type === 'channel.data' ? [Buffer.from(m.data, 'base64')] : [])),
    ).toString('utf8');
  }
  closed(channel: string): Extract<AgentMessage, { type: 'channel.closed' }> | undefined {
    return this.of(channel).find(
      (m): m is Extract<AgentMessage, { type: 'channel.closed' }> => m.type === 'channel.closed',
    );
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

describe('AgentChannels', () => {
  let driver: FakeVmDriver;
  let link: FakeLink;
  let channels: AgentChannels;
  let vm: DesiredInstance;
  let stopped: DesiredInstance;

  beforeEach(async () => {
    driver = new FakeVmDriver();
    link = new FakeLink();
    channels = new AgentChannels({ driver, link, chunkBytes: 16, maxBufferedBytes: 1024 });
    vm = desiredInstance({ name: 'web' });
    stopped = desiredInstance({ name: 'db' });
    await driver.create(vm);
    await driver.start(vm.id);
    await driver.create(stopped);
  });
  afterEach(() => channels.closeAll());

  const send = (msg: ControlMessage) => expect(channels.handle(msg)).toBe(true);

  it('leaves other control messages to the agent', () => {
    expect(channels.handle({ type: 'error', code: 'x', message: 'y' })).toBe(false);
    expect(channels.handle({ type: 'snapshot', desired: { instance: [] } })).toBe(false);
  });

  it('opens a console, acknowledges it, carries bytes both ways and closes on request', async () => {
    send({ type: 'console.open', channel: 'c1', instance_id: vm.id });
    await until('ack', () => link.of('c1').length > 0);
    expect(link.of('c1')[0]).toEqual({ type: 'channel.data', channel: 'c1', data: '' });
    send({ type: 'channel.data', channel: 'c1', data: b64('echo hello\r\n') });
    await until('echo', () => link.bytes('c1').includes('echo hello'));
    expect(channels.size).toBe(1);
    send({ type: 'channel.close', channel: 'c1' });
    expect(link.closed('c1')).toEqual({ type: 'channel.closed', channel: 'c1' });
    expect(channels.size).toBe(0);
    // The console is detached: later output no longer reaches the channel.
    const before = link.of('c1').length;
    const other = await driver.openConsole(vm.id);
    other.write(Buffer.from('later\r\n'));
    other.close();
    expect(link.of('c1').length).toBe(before);
    // A second close of the same channel is harmless.
    send({ type: 'channel.close', channel: 'c1' });
    expect(link.of('c1').filter((m) => m.type === 'channel.closed')).toHaveLength(1);
  });

  it('keeps keystrokes sent while the console is still opening', async () => {
    send({ type: 'console.open', channel: 'c2', instance_id: vm.id });
    send({ type: 'channel.data', channel: 'c2', data: b64('typed-early\r\n') });
    await until('echo of early input', () => link.bytes('c2').includes('typed-early'));
  });

  it('reports why a console cannot open', async () => {
    send({ type: 'console.open', channel: 's', instance_id: stopped.id });
    send({ type: 'console.open', channel: 'u', instance_id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3' });
    send({ type: 'console.open', channel: 'bad', instance_id: '../../etc' });
    await until('three answers', () => ['s', 'u', 'bad'].every((c) => link.closed(c) !== undefined));
    expect(link.closed('s')!.error?.code).toBe('invalid_state');
    expect(link.closed('u')!.error?.code).toBe('instance_not_found');
    expect(link.closed('bad')!.error?.code).toBe('validation_failed');
    // None of them was acknowledged as open.
    for (const c of ['s', 'u', 'bad']) expect(link.of(c)).toHaveLength(1);
    expect(channels.size).toBe(0);
  });

  it('sends the log history in chunks, then closes', async () => {
    send({ type: 'logs.open', channel: 'l1', instance_id: vm.id, follow: false });
    await until('closed', () => link.closed('l1') !== undefined);
    expect(link.closed('l1')!.error).toBeUndefined();
    const history = (await driver.readLog(vm.id)).toString('utf8');
    expect(link.bytes('l1')).toBe(history);
    expect(history).toContain('FLOE-FAKE READY web');
    const data = link.of('l1').filter((m) => m.type === 'channel.data');
    expect(data.length).toBeGreaterThan(2); // ack + more than one chunk of 16 bytes
    for (const m of data) expect(Buffer.from((m as { data: string }).data, 'base64').length).toBeLessThanOrEqual(16);
  });

  it('honours tail_bytes', async () => {
    send({ type: 'logs.open', channel: 'l2', instance_id: vm.id, tail_bytes: 10, follow: false });
    await until('closed', () => link.closed('l2') !== undefined);
    const history = (await driver.readLog(vm.id)).toString('utf8');
    expect(link.bytes('l2')).toBe(history.slice(-10));
    send({ type: 'logs.open', channel: 'l3', instance_id: vm.id, tail_bytes: -1, follow: false });
    await until('refused', () => link.closed('l3') !== undefined);
    expect(link.closed('l3')!.error?.code).toBe('validation_failed');
  });

  it('follows new output until the channel is closed', async () => {
    send({ type: 'logs.open', channel: 'f', instance_id: vm.id, follow: true });
    await until('history', () => link.bytes('f').includes('FLOE-FAKE READY web'));
    expect(link.closed('f')).toBeUndefined();
    const console = await driver.openConsole(vm.id);
    console.write(Buffer.from('new output\r\n'));
    await until('followed output', () => link.bytes('f').includes('new output'));
    // Written once, seen once.
    expect(link.bytes('f').split('new output').length).toBe(2);
    send({ type: 'channel.close', channel: 'f' });
    console.write(Buffer.from('after close\r\n'));
    console.close();
    expect(link.bytes('f')).not.toContain('after close');
    expect(link.closed('f')).toBeDefined();
  });

  it('reads the logs of a stopped VM', async () => {
    await driver.stop(vm.id, { force: true });
    send({ type: 'logs.open', channel: 'ls', instance_id: vm.id, follow: false });
    await until('closed', () => link.closed('ls') !== undefined);
    expect(link.bytes('ls')).toContain('FLOE-FAKE READY web');
  });

  it('answers stats requests with counters or the error', async () => {
    send({ type: 'stats.get', request_id: 'r1', instance_id: vm.id });
    send({ type: 'stats.get', request_id: 'r2', instance_id: stopped.id });
    await until('two answers', () => link.sent.filter((m) => m.type === 'stats').length === 2);
    const r1 = link.sent.find((m) => m.type === 'stats' && m.request_id === 'r1') as Extract<
      AgentMessage,
      { type: 'stats' }
    >;
    const r2 = link.sent.find((m) => m.type === 'stats' && m.request_id === 'r2') as Extract<
      AgentMessage,
      { type: 'stats' }
    >;
    expect(r1.instance_id).toBe(vm.id);
    expect(r1.stats?.memory_bytes).toBeGreaterThan(0);
    expect(r1.error).toBeUndefined();
    expect(r2.stats).toBeUndefined();
    expect(r2.error?.code).toBe('invalid_state');
  });

  it('opens a graphical console: raw RFB both ways, several at once; refused for a stopped VM', async () => {
    send({ type: 'vnc.open', channel: 'v1', instance_id: vm.id });
    send({ type: 'vnc.open', channel: 'v2', instance_id: vm.id });
    send({ type: 'vnc.open', channel: 'v3', instance_id: stopped.id });
    await until('versions', () => link.bytes('v1') === 'RFB 003.008\n' && link.bytes('v2') === 'RFB 003.008\n');
    expect(link.of('v1')[0]).toEqual({ type: 'channel.data', channel: 'v1', data: '' });
    send({ type: 'channel.data', channel: 'v1', data: b64('RFB 003.008\n') });
    await until('security types', () => link.bytes('v1').length > 12);
    expect(Buffer.from(link.bytes('v1').slice(12), 'latin1')).toEqual(Buffer.from([1, 1]));
    await until('refusal', () => link.closed('v3') !== undefined);
    expect(link.closed('v3')?.error?.code).toBe('invalid_state');
    expect(channels.size).toBe(2);
    send({ type: 'channel.close', channel: 'v1' });
    expect(channels.size).toBe(1);
  });

  it('answers stats history requests from the sampler, or says there is none', async () => {
    send({ type: 'stats.history.get', request_id: 'h0', instance_id: vm.id });
    const answer = (id: string) =>
      link.sent.find((m) => m.type === 'stats.history' && m.request_id === id) as
        Extract<AgentMessage, { type: 'stats.history' }> | undefined;
    await until('no history', () => answer('h0') !== undefined);
    expect(answer('h0')?.error?.code).toBe('host_operation_failed');

    const sampler = new StatsSampler({ driver, intervalMs: 10_000 });
    await sampler.sample();
    await new Promise((r) => setTimeout(r, 5));
    await sampler.sample();
    const withHistory = new AgentChannels({ driver, link, history: sampler });
    withHistory.handle({ type: 'stats.history.get', request_id: 'h1', instance_id: vm.id });
    const since = sampler.history(vm.id)[1]!.at;
    withHistory.handle({ type: 'stats.history.get', request_id: 'h2', instance_id: vm.id, since });
    withHistory.handle({ type: 'stats.history.get', request_id: 'h3', instance_id: 'nope' });
    await until('answers', () => ['h1', 'h2', 'h3'].every((id) => answer(id) !== undefined));
    expect(answer('h1')).toMatchObject({ interval_ms: 10_000, retention_ms: 3600_000 });
    expect(answer('h1')?.samples).toHaveLength(2);
    expect(answer('h1')?.samples?.[0]?.started_at).not.toBeNull();
    expect(answer('h2')?.samples).toEqual([]);
    expect(answer('h3')?.error?.code).toBe('validation_failed');
  });

  it('closes every channel when the link drops', async () => {
    send({ type: 'console.open', channel: 'c', instance_id: vm.id });
    send({ type: 'logs.open', channel: 'f', instance_id: vm.id, follow: true });
    await until('both open', () => link.of('c').length > 0 && link.bytes('f').includes('READY'));
    expect(channels.size).toBe(2);
    channels.closeAll();
    expect(channels.size).toBe(0);
    const before = link.sent.length;
    const console = await driver.openConsole(vm.id);
    console.write(Buffer.from('nobody listens\r\n'));
    console.close();
    expect(link.sent.length).toBe(before);
  });

  it('closes a console whose output backs up the link instead of buffering it', async () => {
    send({ type: 'console.open', channel: 'slow', instance_id: vm.id });
    await until('ack', () => link.of('slow').length > 0);
    link.bufferedAmount = 10_000;
    send({ type: 'channel.data', channel: 'slow', data: b64('x'.repeat(100)) });
    await until('closed', () => link.closed('slow') !== undefined);
    expect(link.closed('slow')!.error?.code).toBe('stream_overflow');
    expect(link.bytes('slow')).not.toContain('xxxx');
    expect(channels.size).toBe(0);
  });

  it('holds log history back while the link is backed up', async () => {
    link.bufferedAmount = 10_000;
    send({ type: 'logs.open', channel: 'h', instance_id: vm.id, follow: false });
    await until('ack', () => link.of('h').length > 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(link.of('h')).toHaveLength(1); // only the ack
    link.bufferedAmount = 0;
    await until('closed', () => link.closed('h') !== undefined);
    expect(link.bytes('h')).toContain('FLOE-FAKE READY web');
  });
});

describe('channel helpers', () => {
  it('drops output the history already holds', () => {
    const h = Buffer.from('abc\r\ndef\r\n');
    expect(dropSeen(h, [Buffer.from('def\r\n')])).toEqual([]);
    expect(dropSeen(h, [Buffer.from('def\r\n'), Buffer.from('ghi')]).map(String)).toEqual(['ghi']);
    expect(dropSeen(h, [Buffer.from('xyz')]).map(String)).toEqual(['xyz']);
    expect(dropSeen(Buffer.alloc(0), [Buffer.from('a')]).map(String)).toEqual(['a']);
  });

  it('splits into bounded chunks', () => {
    expect(chunks(Buffer.from('abcdefg'), 3).map(String)).toEqual(['abc', 'def', 'g']);
    expect(chunks(Buffer.alloc(0), 3)).toEqual([]);
  });

  it('turns failures into stable codes', () => {
    expect(errorBody(new Error('boom'))).toEqual({ code: 'host_operation_failed', message: 'boom' });
  });
});
