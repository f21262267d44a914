/** @floe/server: the floe control plane. */
export { buildApp, type App } from './app.js';
export { buildServices, seed, type ControlPki, type Services } from './wiring.js';
export { loadConfig, type Config } from './config.js';
export { init, start, openPki, openConfiguredStore, dataPaths, localHostName, type InitResult } from './control.js';
export { openStore, type Store } from './db/index.js';
export * from './ca/index.js';
export { VERSION } from './version.js';
