import type { Command } from 'commander';
import { registerAudit } from './audit.js';
import { registerEvents } from './events.js';
import { registerHost } from './host.js';
import { registerImage } from './image.js';
import { registerInstance } from './instance.js';
import { registerLogin } from './login.js';
import { registerNetwork } from './network.js';
import { registerVpn } from './vpn.js';
import { registerFloatingIp, registerForward } from './nat.js';
import { registerOperation } from './operation.js';
import { registerProject } from './project.js';
import { registerSecurityGroup } from './security-group.js';
import { registerToken } from './token.js';
import { registerUser } from './user.js';
import { registerType } from './type.js';
import { registerUp } from './up.js';

/** Adds every noun's commands to the program; the order is the order in `floe --help`. */
export function registerCommands(program: Command): void {
  registerUp(program);
  registerLogin(program);
  registerProject(program);
  registerToken(program);
  registerUser(program);
  registerHost(program);
  registerImage(program);
  registerType(program);
  registerInstance(program);
  registerNetwork(program);
  registerSecurityGroup(program);
  registerVpn(program);
  registerFloatingIp(program);
  registerForward(program);
  registerOperation(program);
  registerEvents(program);
  registerAudit(program);
}
