import { readFileSync } from 'node:fs';
const p = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map(); for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map(); const total = new Map();
const counts = new Map(); for (const s of p.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
const N = p.samples.length;
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/.*node_modules\//, 'nm/').replace(/.*\/packages\//, 'pk/')}:${n.callFrame.lineNumber + 1}`;
for (const [id, c] of counts) {
  const n = byId.get(id); self.set(key(n), (self.get(key(n)) ?? 0) + c);
  const seen = new Set(); let cur = id;
  while (cur !== undefined) { const k = key(byId.get(cur)); if (!seen.has(k)) { seen.add(k); total.set(k, (total.get(k) ?? 0) + c); } cur = parent.get(cur); }
}
const top = (m, n) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${(100 * v / N).toFixed(1).padStart(5)}%  ${k}`).join('\n');
console.log('samples', N, '\n--- self'); console.log(top(self, Number(process.argv[3] ?? 40)));
console.log('--- total'); console.log(top(total, Number(process.argv[4] ?? 60)));
