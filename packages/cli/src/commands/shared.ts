import { Option, type Command } from 'commander';
import type { PageOf } from '@floe/api';
import { collect, intArg, parseSelectors } from '../parse.js';
import { CliError, UsageError } from '../errors.js';
import type { CliRuntime } from '../runtime.js';

/** Flags every `ls` takes. */
export interface ListFlags {
  label?: string[];
  allPages?: boolean;
  limit?: number;
}

/** Adds `--label`, `--limit` and `--all-pages` to an `ls` command. */
export function listOptions(cmd: Command, { labels = true }: { labels?: boolean } = {}): Command {
  if (labels)
    cmd.option(
      '-l, --label <key=value>',
      'only items with this label (key or key=value; repeatable, all must match)',
      collect,
    );
  return cmd
    .addOption(new Option('--limit <n>', 'items per page').argParser(intArg(1, 1000)))
    .option('-A, --all-pages', 'follow the cursor and list every page');
}

/** Something with one-page and every-page listing (a client resource group). */
export interface Listable<T, Q> {
  list(query?: Q): Promise<PageOf<T>>;
  listAll(query?: Q): Promise<T[]>;
}

/** Lists one page (with a hint when more exist) or every page with `--all-pages`. */
export async function fetchPage<T, Q extends object>(
  rt: CliRuntime,
  api: Listable<T, Q>,
  query: Q,
  flags: ListFlags,
): Promise<PageOf<T>> {
  const q = {
    ...query,
    ...(flags.label === undefined ? {} : { label: parseSelectors(flags.label) }),
    ...(flags.limit === undefined ? {} : { limit: flags.limit }),
  } as Q;
  if (flags.allPages === true) return { items: await api.listAll(q), next_cursor: null };
  const page = await api.list(q);
  if (page.next_cursor !== null) rt.warn('(more items exist: use --all-pages)');
  return page;
}

/** Builds `id → name` from a best-effort listing (for tables that show names instead of ids). */
export async function nameMap(load: () => Promise<{ id: string; name: string }[]>): Promise<Map<string, string>> {
  try {
    return new Map((await load()).map((r) => [r.id, r.name]));
  } catch {
    return new Map(); // e.g. hosts are admin-only: fall back to ids
  }
}

/** Attaches examples shown after the help text. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/**
 * Asks before a deletion unless `--yes` was given; without a terminal to ask,
 * refuses (a usage error) rather than deleting unasked.
 */
export async function confirmDeletion(rt: CliRuntime, yes: boolean | undefined, what: string, question: string) {
  if (yes === true) return;
  if (!rt.canAsk) throw new UsageError(`refusing to delete ${what} without --yes (no terminal to ask)`);
  if (!(await rt.confirm(question))) throw new CliError('not deleted', 'aborted');
}
