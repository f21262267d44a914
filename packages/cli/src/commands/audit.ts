import { Option, type Command } from 'commander';
import type { AuditQuery, AuditRecord } from '@floe/api';
import { age, renderJson, renderTable } from '../output.js';
import { runtimeOf } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of audit records: who (token, user), what (action, resource), from where, and how it ended. */
function auditTable(items: AuditRecord[], now: number): string {
  return renderTable(
    ['AT', 'ACTION', 'OUTCOME', 'TOKEN', 'USER', 'RESOURCE', 'PROJECT', 'FROM', 'AGE'],
    items.map((r) => [
      r.at,
      r.action,
      r.outcome === 'ok' ? `${r.status ?? 'ok'}` : `${r.status ?? ''} ${r.error_code ?? r.reason ?? ''}`.trim(),
      r.token_id ?? '-',
      r.user_name ?? r.user_id ?? '-',
      r.resource_id === null ? '-' : `${r.resource_kind ?? ''}/${r.resource_id}`,
      r.project ?? '-',
      r.source_address ?? '-',
      age(r.at, now),
    ]),
  );
}

interface AuditFlags extends ListFlags {
  token?: string;
  user?: string;
  action?: string;
  outcome?: 'ok' | 'error';
  resource?: string;
  since?: string;
  until?: string;
  json?: boolean;
}

/** `floe audit`: the audit log (admin tokens), newest first. */
export function registerAudit(program: Command): void {
  const audit = listOptions(
    program
      .command('audit')
      .description('show the audit log: mutating requests and authentication events, newest first (admin)'),
    { labels: false },
  )
    .option('--token <id>', 'only records of this token')
    .option('--user <id-or-name>', 'only records of this user')
    .option('--action <prefix>', 'only actions starting with this, e.g. instance. or auth.failed')
    .addOption(
      new Option('--outcome <outcome>', 'only successful or only refused/failed requests').choices(['ok', 'error']),
    )
    .option('--resource <id>', 'only records about this resource')
    .option('--since <time>', 'only records at or after this time (ISO 8601)')
    .option('--until <time>', 'only records before this time (ISO 8601)')
    .option('--json', 'print the records as JSON (as -o json)')
    .addHelpText('after', '\nThe project filter is the global --project; without it every project is shown.\n')
    .action(async (opts: AuditFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const project = rt.globals(cmd).project;
      const query: AuditQuery = Object.fromEntries(
        Object.entries({
          token: opts.token,
          user: opts.user,
          action: opts.action,
          outcome: opts.outcome,
          resource: opts.resource,
          since: opts.since,
          until: opts.until,
          project,
        }).filter(([, v]) => v !== undefined),
      );
      const page = await fetchPage(rt, rt.client(cmd).audit, query, opts);
      if (opts.json === true) rt.out.write(renderJson(page));
      else rt.print(cmd, page, () => auditTable(page.items, rt.now()));
    });
  examples(audit, [
    'floe audit --outcome error --since 2026-12-01T00:00:00Z',
    'floe audit --action auth.failed --limit 20',
    'floe audit --resource inst_01JB8X0Q3E6M2T9K4V7W5YB1C3 --json',
  ]);
}
