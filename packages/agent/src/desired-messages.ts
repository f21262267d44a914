import type { ControlMessage } from '@floe/api';
import type { DesiredState, DesiredUpdate } from './kinds.js';

/**
 * The desired state a control message carries, by kind, and whether it is
 * all there is of those kinds; null for messages that carry none. The one
 * place that knows how the wire spells desired state: a `snapshot` has the
 * whole set of every kind the control plane manages (a kind absent stays as
 * it is), a `desired` message one kind's whole set (`full`) or changed items.
 */
export function desiredOf(msg: ControlMessage): { state: DesiredState; update: DesiredUpdate } | null {
  switch (msg.type) {
    case 'snapshot':
      return { state: msg.desired, update: { full: true } };
    case 'desired':
      return { state: { [msg.kind]: msg.items }, update: { full: msg.full } };
    default:
      return null;
  }
}
