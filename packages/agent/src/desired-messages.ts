import type { ControlMessage } from '@floe/api';
import type { DesiredState, DesiredUpdate } from './kinds.js';

/**
 * The desired state a control message carries, by kind, and whether it is
 * all there is of those kinds; null for messages that carry none. The one
 * place that knows how the wire spells desired state.
 */
export function desiredOf(msg: ControlMessage): { state: DesiredState; update: DesiredUpdate } | null {
  switch (msg.type) {
    case 'snapshot':
      return {
        state: { instance: msg.instances, ...(msg.networks === undefined ? {} : { network: msg.networks }) },
        update: { full: true },
      };
    case 'networks':
      return { state: { network: msg.networks }, update: { full: true } };
    case 'instance':
      return { state: { instance: [msg.instance] }, update: { full: false } };
    default:
      return null;
  }
}
