/**
 * The only place in the control plane that starts processes (qemu-img for
 * image uploads): floe's one process runner, argument arrays, never a shell.
 */
export { run, ExecError, type RunResult, type RunOptions } from '@floe/process';
