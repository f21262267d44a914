import type { VmInfo } from '@floe/api';

/** An orphan as reported: an instance event of the VM. */
interface OrphanReport {
  id: string;
  message: string;
  data: { state: VmInfo['state'] };
}

/**
 * VMs the driver runs that the desired state does not mention: reported once
 * each (a control plane that forgot them must not kill them, but should hear
 * of them), and again only after they were wanted or went away in between.
 */
export class OrphanReports {
  private readonly reported = new Set<string>();

  /** The VM is wanted again: should it become an orphan later, it is reported again. */
  wanted(id: string): void {
    this.reported.delete(id);
  }

  /** The orphans among `vms` not reported yet (`known`: wanted or being deleted), now marked as reported. */
  check(vms: readonly VmInfo[], known: (id: string) => boolean): OrphanReport[] {
    const present = new Set<string>();
    const out: OrphanReport[] = [];
    for (const vm of vms) {
      present.add(vm.id);
      if (known(vm.id) || this.reported.has(vm.id)) continue;
      this.reported.add(vm.id);
      out.push({
        id: vm.id,
        message: `VM ${vm.id} (${vm.state}) exists on this host but not in the desired state; left alone`,
        data: { state: vm.state },
      });
    }
    for (const id of [...this.reported]) if (!present.has(id)) this.reported.delete(id);
    return out;
  }
}
