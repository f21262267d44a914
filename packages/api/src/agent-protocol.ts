import type { HostFacts, InstanceSpec, InstanceState } from './resources.js';

/**
 * The agent link: JSON messages over one WebSocket (mutual TLS), agent dials
 * out to `GET /v1/agent`. The control plane sends desired state; the agent
 * reconciles and reports what it observes. Both sides are level-triggered: a
 * reconnect sends a full snapshot again and nothing is duplicated.
 */
export const AGENT_PROTOCOL_VERSION = 1;

/** Everything the agent must make true for one instance. */
export interface DesiredInstance {
  id: string;
  name: string;
  project: string;
  /** Instance revision this desired state was taken from. */
  revision: number;
  spec: InstanceSpec;
  /** True once the user deleted it: the agent tears it down and reports `deleted`. */
  deleting: boolean;
  /** Bumped by every start/stop/restart request; operations wait for the agent to observe it. */
  generation: number;
  /** Bumped only by restart requests: the agent restarts the VM when this exceeds what it last applied. */
  restart_generation: number;
  /** Stop without an ACPI power-down (set by `stop --force`). */
  force_stop: boolean;
}

/** What the agent observes for one instance. */
export interface ObservedInstance {
  id: string;
  /** `deleted` means the agent removed every trace of it. */
  state: InstanceState | 'deleted';
  /** Revision and generation of the desired state last applied. */
  observed_revision: number;
  observed_generation: number;
  observed_restart_generation: number;
  reason: string | null;
  accelerator: 'kvm' | 'tcg' | 'fake' | null;
  started_at: string | null;
  stopped_at: string | null;
}

/** Agent → control plane. */
export type AgentMessage =
  | { type: 'hello'; protocol: number; facts: HostFacts; instances: ObservedInstance[] }
  | { type: 'heartbeat'; time: string }
  | { type: 'status'; instance: ObservedInstance }
  | { type: 'event'; instance_id: string; event: string; message: string; data?: Record<string, unknown> };

/** Control plane → agent. */
export type ControlMessage =
  | { type: 'welcome'; host_id: string; host_name: string; heartbeat_interval_ms: number }
  | { type: 'snapshot'; instances: DesiredInstance[] }
  | { type: 'instance'; instance: DesiredInstance }
  | { type: 'error'; code: string; message: string };

/** WebSocket close codes the control plane uses on the agent link. */
export const AGENT_CLOSE = {
  /** Another connection for the same host took over. */
  replaced: 4001,
  /** The host was deleted or its certificate revoked. */
  revoked: 4003,
  /** Protocol violation. */
  protocol: 4002,
} as const;
