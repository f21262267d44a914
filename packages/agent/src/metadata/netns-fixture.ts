import { createInterface } from 'node:readline';
import type { DesiredInstance, DesiredNetwork } from '@floe/api';
import { run } from '../host/exec.js';
import type { PortRange } from './nft.js';
import { MetadataService } from './service.js';

/*
 * The metadata service of the namespace tests, run as its own process inside
 * the namespace that stands in for a host (`ip netns exec <ns> node ...`): a
 * listener can only be bound inside a namespace by a process living there.
 * Not used by the agent. Each stdin line is a JSON state
 * `{ instances, networks?, ports, vendorData? }`; after applying it, the process prints
 * `{"ready":{<nic>:<port>}}`. First-boot events are printed as
 * `{"first_boot":{"instance":...,"event":...}}`.
 */

let service: MetadataService | null = null;
let vendor: string | null = null;
const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  void (async () => {
    const state = JSON.parse(line) as {
      instances: DesiredInstance[];
      networks?: DesiredNetwork[];
      ports: PortRange;
      vendorData?: string;
    };
    vendor = state.vendorData ?? null;
    service ??= new MetadataService({
      exec: (argv, o) => run(argv[0]!, argv.slice(1), o),
      ports: state.ports,
      onFirstBoot: (instance, event) => print({ first_boot: { instance, event } }),
      vendorData: () => vendor,
    });
    service.setInstances(state.instances);
    if (state.networks !== undefined) service.setNetworks(state.networks);
    await service.whenIdle();
    print({ ready: Object.fromEntries(service.listening()) });
  })().catch((err: unknown) => {
    print({ error: (err as Error).message });
  });
});
process.once('SIGTERM', () => {
  void (service?.stop() ?? Promise.resolve()).then(() => process.exit(0));
});
