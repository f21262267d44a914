/** The floe CLI as a library: the program builder, the runner and the config helpers (used by `floe up`). */
export { buildProgram, run, reportError, CLI_VERSION, EXIT } from './program.js';
export { registerCommands } from './commands/index.js';
export {
  configPath,
  loadConfig,
  writeConfig,
  saveContext,
  removeContext,
  resolveContext,
  readCaFile,
  type ContextConfig,
  type FloeConfig,
  type ResolvedContext,
  type SaveContextOptions,
  type Env,
} from './config.js';
export { CliError, UsageError } from './errors.js';
export { CliRuntime, runtimeOf, type CliDeps, type Writer, type GlobalOptions } from './runtime.js';
export { followOperation } from './progress.js';
export * from './output.js';
