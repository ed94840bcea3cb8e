// A private copy of the built linedns (dist/src) for the length of a run, so that a rebuild in
// the working tree halfway through cannot leave half the table measuring other code.

import { cpSync, existsSync, mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export interface Snapshot {
  /** Root with the same layout as the repository: dist/src, dist/schemas, schemas. */
  root: string;
  cli: string;
  /** What was copied: commit, working-tree changes, build time. */
  describe: string;
}

function git(root: string, args: string[]): string | null {
  const r = spawnSync('git', ['-C', root, ...args], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

export function takeSnapshot(repo: string, dir: string): Snapshot {
  const root = join(dir, 'linedns');
  const cliSource = join(repo, 'dist/src/cli.js');
  if (!existsSync(cliSource)) throw new Error(`${cliSource} is missing: run npm run build first`);
  mkdirSync(join(root, 'dist'), { recursive: true });
  // Paths inside dist/src are relative (../../schemas, ../../../schemas), so keep the layout.
  cpSync(join(repo, 'dist/src'), join(root, 'dist/src'), { recursive: true });
  if (existsSync(join(repo, 'dist/schemas'))) cpSync(join(repo, 'dist/schemas'), join(root, 'dist/schemas'), { recursive: true });
  cpSync(join(repo, 'schemas'), join(root, 'schemas'), { recursive: true });
  // package.json makes the .js files ES modules; dependencies resolve through the link.
  cpSync(join(repo, 'package.json'), join(root, 'package.json'));
  // The shipped config, for the footprint step (it serves config/ as npm start does).
  if (existsSync(join(repo, 'config'))) cpSync(join(repo, 'config'), join(root, 'config'), { recursive: true });
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'), 'dir');
  const commit = git(repo, ['rev-parse', '--short', 'HEAD']) ?? 'unknown commit';
  const dirty = git(repo, ['status', '--porcelain', '--untracked-files=no', '--', 'src']);
  const built = statSync(cliSource).mtime.toISOString().slice(0, 16).replace('T', ' ');
  return { root, cli: join(root, 'dist/src/cli.js'), describe: `commit ${commit}${dirty ? ' with uncommitted changes in src/' : ''}, dist built ${built} UTC` };
}
