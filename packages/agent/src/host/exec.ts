/**
 * The only place in the agent that starts processes: floe's one process
 * runner (argument arrays, never a shell). Callers validate every name
 * before it gets here.
 */
export * from '@floe/process';
