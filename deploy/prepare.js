// npm's `prepare` (run by a plain `npm install` / `npm ci` in a checkout, and before `npm pack`):
// build dist/ when TypeScript is installed. With `npm ci --omit=dev` (a production install, as in
// deploy/Containerfile) TypeScript is absent: then this must not fail the install, since the
// build was done elsewhere (dist/ copied in) or cannot be done here; it says which.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('../', import.meta.url);
const require = createRequire(new URL('package.json', root));

let hasTypeScript = true;
try {
  require.resolve('typescript');
} catch {
  hasTypeScript = false;
}

if (hasTypeScript) {
  // npm sets npm_execpath to its own CLI script; fall back to `npm` on PATH when run by hand.
  const npm = process.env.npm_execpath;
  const r = npm && npm.endsWith('.js')
    ? spawnSync(process.execPath, [npm, 'run', 'build'], { cwd: root, stdio: 'inherit' })
    : spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  process.exit(r.status ?? 1);
} else if (existsSync(new URL('dist/src/cli.js', root))) {
  console.error('linedns prepare: dev dependencies omitted; using the existing dist/ (not rebuilt)');
} else {
  console.error(
    'linedns prepare: dev dependencies omitted and no dist/: `npm start` needs a build; ' +
      'run `npm install` (with dev dependencies) once, or copy a built dist/ in',
  );
}
