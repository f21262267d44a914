import { describe, expect, it } from 'vitest';
import { FloeError, type ControlMessage, type VmStats } from '@floe/api';
import { agentError, LinkChannels } from './channels.js';

/** A link that records what the control plane sends. */
function fakeLink(up = true): { sent: ControlMessage[]; channels: LinkChannels; last: () => ControlMessage } {
  const sent: ControlMessage[] = [];
  const channels = new LinkChannels((msg) => {
    if (!up) return false;
    sent.push(msg);
    return true;
  });
  return { sent, channels, last: () => sent[sent.length - 1]! };
}

const channelOf = (msg: ControlMessage): string => (msg as { channel: string }).channel;
const b64 = (s: string) => Buffer.from(s).toString('base64');

const STATS: VmStats = {
  at: '2025-01-01T00:00:00.000Z',
  cpu_time_ns: 1,
  memory_bytes: 2,
  memory_assigned_bytes: 3,
  disk_read_bytes: 4,
  disk_write_bytes: 5,
  net_rx_bytes: 6,
  net_tx_bytes: 7,
};

describe('LinkChannels', () => {
  it("opens a channel on the agent's first data message and routes bytes both ways", async () => {
    const { sent, channels, last } = fakeLink();
    const opening = channels.openChannel({ type: 'console.open', instance_id: 'inst_x' }, 1000);
    const id = channelOf(last());
    expect(last()).toEqual({ type: 'console.open', instance_id: 'inst_x', channel: id });
    channels.deliver({ type: 'channel.data', channel: id, data: '' });
    const ch = await opening;
    // Bytes that arrive before a reader attaches are kept for it.
    channels.deliver({ type: 'channel.data', channel: id, data: b64('early ') });
    const got: string[] = [];
    ch.onData((d) => got.push(d.toString()));
    channels.deliver({ type: 'channel.data', channel: id, data: b64('late') });
    expect(got.join('')).toBe('early late');
    expect(ch.write(Buffer.from('keys'))).toBe(true);
    expect(last()).toEqual({ type: 'channel.data', channel: id, data: b64('keys') });
    let end: unknown = 'open';
    ch.onClose((e) => (end = e));
    channels.deliver({ type: 'channel.closed', channel: id });
    expect(end).toBeUndefined();
    expect(ch.closed).toBe(true);
    expect(ch.write(Buffer.from('more'))).toBe(false);
    expect(channels.size).toBe(0);
    expect(sent.filter((m) => m.type === 'channel.close')).toHaveLength(0);
  });

  it("rejects with the agent's error when the channel cannot open", async () => {
    const { channels, last } = fakeLink();
    const opening = channels.openChannel({ type: 'console.open', instance_id: 'inst_x' }, 1000);
    channels.deliver({
      type: 'channel.closed',
      channel: channelOf(last()),
      error: { code: 'invalid_state', message: 'VM web is not running' },
    });
    await expect(opening).rejects.toMatchObject({ code: 'invalid_state', message: 'VM web is not running' });
    const odd = channels.openChannel({ type: 'logs.open', instance_id: 'inst_x', follow: false }, 1000);
    channels.deliver({
      type: 'channel.closed',
      channel: channelOf(last()),
      error: { code: 'qmp_exploded', message: 'boom' },
    });
    await expect(odd).rejects.toMatchObject({ code: 'host_operation_failed' });
    expect(channels.size).toBe(0);
  });

  it('gives up on a silent host with host_timeout and tells the agent', async () => {
    const { sent, channels, last } = fakeLink();
    const opening = channels.openChannel({ type: 'logs.open', instance_id: 'inst_x', follow: true }, 20);
    const id = channelOf(last());
    await expect(opening).rejects.toMatchObject({ code: 'host_timeout' });
    expect(last()).toEqual({ type: 'channel.close', channel: id });
    // A late answer is dropped quietly, without a second close.
    channels.deliver({ type: 'channel.data', channel: id, data: b64('late') });
    expect(sent.filter((m) => m.type === 'channel.close')).toHaveLength(1);
    await expect(channels.stats('inst_x', 20)).rejects.toMatchObject({ code: 'host_timeout' });
  });

  it('closing a channel tells the agent once and drops bytes still on the way', async () => {
    const { sent, channels, last } = fakeLink();
    const opening = channels.openChannel({ type: 'console.open', instance_id: 'inst_x' }, 1000);
    const id = channelOf(last());
    channels.deliver({ type: 'channel.data', channel: id, data: '' });
    const ch = await opening;
    const got: string[] = [];
    ch.onData((d) => got.push(d.toString()));
    ch.close();
    ch.close();
    channels.deliver({ type: 'channel.data', channel: id, data: b64('after') });
    channels.deliver({ type: 'channel.closed', channel: id });
    expect(got).toEqual([]);
    expect(sent.filter((m) => m.type === 'channel.close')).toEqual([{ type: 'channel.close', channel: id }]);
    // Data for a channel nobody knows makes the control plane close it.
    channels.deliver({ type: 'channel.data', channel: 'stray', data: b64('x') });
    expect(last()).toEqual({ type: 'channel.close', channel: 'stray' });
  });

  it('says when the link towards the agent is backed up', async () => {
    let queued = 0;
    const sent: ControlMessage[] = [];
    const channels = new LinkChannels(
      (msg) => sent.push(msg) > 0,
      () => queued,
    );
    const opening = channels.openChannel({ type: 'console.open', instance_id: 'inst_x' }, 1000);
    channels.deliver({ type: 'channel.data', channel: channelOf(sent[0]!), data: '' });
    const ch = await opening;
    expect(ch.backedUp).toBe(false);
    queued = 64 * 1024 * 1024;
    expect(ch.backedUp).toBe(true);
  });

  it('answers stats requests by id', async () => {
    const { channels, last } = fakeLink();
    const a = channels.stats('inst_a', 1000);
    const ra = (last() as { request_id: string }).request_id;
    const b = channels.stats('inst_b', 1000);
    const rb = (last() as { request_id: string }).request_id;
    expect(ra).not.toBe(rb);
    channels.deliver({
      type: 'stats',
      request_id: rb,
      instance_id: 'inst_b',
      error: { code: 'invalid_state', message: 'stopped' },
    });
    channels.deliver({ type: 'stats', request_id: ra, instance_id: 'inst_a', stats: STATS });
    await expect(a).resolves.toEqual(STATS);
    await expect(b).rejects.toMatchObject({ code: 'invalid_state' });
  });

  it('answers stats history requests by id, and never with an answer of the other kind', async () => {
    const { channels, last } = fakeLink();
    const h = channels.statsHistory('inst_a', '2025-01-01T00:00:00Z', 1000);
    const rh = (last() as { request_id: string }).request_id;
    expect(last()).toEqual({
      type: 'stats.history.get',
      request_id: rh,
      instance_id: 'inst_a',
      since: '2025-01-01T00:00:00Z',
    });
    const s = channels.stats('inst_a', 1000);
    const rs = (last() as { request_id: string }).request_id;
    // A stats answer under the history's id is not taken for the history.
    channels.deliver({ type: 'stats', request_id: rh, instance_id: 'inst_a', stats: STATS });
    channels.deliver({
      type: 'stats.history',
      request_id: rh,
      instance_id: 'inst_a',
      interval_ms: 10_000,
      retention_ms: 3_600_000,
      samples: [{ ...STATS, started_at: null }],
    });
    await expect(h).resolves.toEqual({
      interval_ms: 10_000,
      retention_ms: 3_600_000,
      samples: [{ ...STATS, started_at: null }],
    });
    channels.deliver({ type: 'stats', request_id: rs, instance_id: 'inst_a', stats: STATS });
    await expect(s).resolves.toEqual(STATS);
    const failed = channels.statsHistory('inst_b', undefined, 1000);
    const rf = (last() as { request_id: string }).request_id;
    expect(last()).not.toHaveProperty('since');
    channels.deliver({
      type: 'stats.history',
      request_id: rf,
      instance_id: 'inst_b',
      error: { code: 'instance_not_found', message: 'no' },
    });
    await expect(failed).rejects.toMatchObject({ code: 'instance_not_found' });
    await expect(channels.statsHistory('inst_c', undefined, 20)).rejects.toMatchObject({ code: 'host_timeout' });
  });

  it('fails everything with host_offline when the link goes away', async () => {
    const { channels, last } = fakeLink();
    const open = channels.openChannel({ type: 'console.open', instance_id: 'inst_x' }, 1000);
    channels.deliver({ type: 'channel.data', channel: channelOf(last()), data: '' });
    const ch = await open;
    let end: unknown;
    ch.onClose((e) => (end = e));
    const opening = channels.openChannel({ type: 'console.open', instance_id: 'inst_y' }, 1000);
    const stats = channels.stats('inst_x', 1000);
    channels.closeAll({ code: 'host_offline', message: 'the host disconnected' });
    expect(end).toEqual({ code: 'host_offline', message: 'the host disconnected' });
    await expect(opening).rejects.toMatchObject({ code: 'host_offline' });
    await expect(stats).rejects.toMatchObject({ code: 'host_offline' });
    await expect(channels.stats('inst_x', 1000)).rejects.toMatchObject({ code: 'host_offline' });
    expect(channels.size).toBe(0);
  });

  it('fails at once when the message cannot be sent', async () => {
    const { channels } = fakeLink(false);
    await expect(channels.openChannel({ type: 'console.open', instance_id: 'inst_x' }, 1000)).rejects.toMatchObject({
      code: 'host_offline',
    });
    await expect(channels.stats('inst_x', 1000)).rejects.toMatchObject({ code: 'host_offline' });
  });

  it('maps agent errors to floe codes', () => {
    expect(agentError({ code: 'instance_not_found', message: 'gone' })).toBeInstanceOf(FloeError);
    expect(agentError({ code: 'instance_not_found', message: 'gone' }).status).toBe(404);
    expect(agentError({ code: 'weird', message: 'x' }).code).toBe('host_operation_failed');
  });
});
