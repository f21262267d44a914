/** floe's version, reported by /healthz, the OpenAPI document and the agent. */
export const VERSION = '0.1.0';
