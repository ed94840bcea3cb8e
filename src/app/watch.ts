// Reload on change: watches the directories of the config files (the way editors and Kubernetes
// replace files) and asks for a reload once a burst of changes has settled, as SIGHUP does.

import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { RuntimeConfig } from '../config/types.js';
import { isSourceUrl } from '../config/sources.js';

function realTarget(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

/** Changes closer together than this are one edit (an editor writes, renames, chmods). */
export const SETTLE_MS = 200;

/**
 * Every file a configuration was read from: linedns.json, the files it names (URL sources are
 * polled instead), and the resolv.conf its upstreams came from, so that a new nameserver there
 * (DHCP, systemd-resolved, a VPN) is followed as an edit of linedns.json would be.
 */
export function configFiles(config: RuntimeConfig): string[] {
  const files = [config.file, config.recordsFile, config.smartLineFile, config.rewriteFile, ...config.zones.map((z) => z.file), config.resolvConf];
  // /etc/resolv.conf is often a symlink (systemd-resolved, resolvconf): its target's directory is
  // where the rewrites happen.
  if (config.resolvConf !== null) files.push(realTarget(config.resolvConf));
  return [...new Set(files.filter((f): f is string => f !== null && !isSourceUrl(f)))];
}

/**
 * Watches the directories holding `files`, not the files: an editor that saves by writing a new
 * file and renaming it over the old one, and a Kubernetes ConfigMap volume that swaps its
 * `..data` symlink, both replace the inode a file watch would hold, and that watch would go
 * silent. A change to any name in a watched directory that is one of the files, or that is not
 * a plain file name of ours at all (`..data`, `..2026_12_02...`), counts; a directory watch
 * sees its own unrelated files too, which only cost a needless, harmless reload check.
 */
export class ConfigWatcher {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;
  private files: ReadonlySet<string> = new Set();

  constructor(private readonly onChange: () => void) {}

  /** Watches the files of `config` (again, after a reload that may name other files). */
  follow(config: RuntimeConfig): void {
    const files = configFiles(config);
    const key = [...files].sort().join('\n');
    if (key === [...this.files].sort().join('\n')) return;
    this.stop();
    this.files = new Set(files);
    const names = new Set(files.map((f) => basename(f)));
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          // Kubernetes' atomic writer touches `..data` and timestamped `..` directories.
          if (name === null || names.has(name.toString()) || name.toString().startsWith('..')) this.changed();
        });
        // A directory that goes away (unmounted) ends its watch; SIGHUP still works.
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch {
        // Not watchable here (no inotify, too many watches): reload by SIGHUP only.
      }
    }
  }

  private changed(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onChange();
    }, SETTLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
    this.files = new Set();
  }
}
