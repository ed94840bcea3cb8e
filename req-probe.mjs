import { createRequire } from 'node:module';
await import('/tmp/fp/triv.mjs');
const require = createRequire(import.meta.url);
const b = process.memoryUsage().rss;
for (const m of process.argv.slice(2)) require(m);
setTimeout(() => { const u = process.memoryUsage(); console.log(process.argv.slice(2).join(','), 'rss+', ((u.rss - b) / 1e6).toFixed(1)); }, 500);
