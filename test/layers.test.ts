// Keeps the layers of src/ honest: every relative import of every source file must point down (or
// sideways where allowed), so the tree shows the architecture and a stray import fails here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// Read from the repository, not dist: dist also holds files of paths that no longer exist.
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

type Layer = { kind: 'lib' | 'core' | 'registry' | 'transport' | 'config' | 'top' } | { kind: 'stage'; name: string } | { kind: 'none' };

/** `path` is relative to src/, with forward slashes. */
function layerOf(path: string): Layer {
  if (path === 'cli.ts' || path === 'index.ts' || path.startsWith('app/')) return { kind: 'top' };
  if (path.startsWith('lib/')) return { kind: 'lib' };
  if (path.startsWith('core/')) return { kind: 'core' };
  if (path === 'stages/index.ts') return { kind: 'registry' };
  const stage = /^stages\/([^/]+)\//.exec(path);
  if (stage) return { kind: 'stage', name: stage[1]! };
  if (path.startsWith('transport/')) return { kind: 'transport' };
  if (path.startsWith('config/')) return { kind: 'config' };
  return { kind: 'none' };
}

const CONFIG_TYPES = 'config/types.ts';

/** Why an import from `from` to `to` (both relative to src/) breaks the layering, or null. */
function violation(from: string, to: string, typeOnly: boolean): string | null {
  if (to.startsWith('../')) return 'imports from outside src/';
  const src = layerOf(from);
  const dst = layerOf(to);
  const configTypes = to === CONFIG_TYPES && typeOnly;
  let ok: boolean;
  switch (src.kind) {
    case 'top':
      ok = true;
      break;
    case 'lib':
      ok = dst.kind === 'lib';
      break;
    case 'core':
      ok = dst.kind === 'lib' || dst.kind === 'core' || configTypes;
      break;
    case 'stage':
      ok = dst.kind === 'lib' || dst.kind === 'core' || configTypes || (dst.kind === 'stage' && dst.name === src.name);
      break;
    case 'registry':
      ok = dst.kind === 'stage' || dst.kind === 'registry' || dst.kind === 'core' || dst.kind === 'lib' || dst.kind === 'config';
      break;
    // The transports take their TCP limits as the config types them: a type, no code of config.
    case 'transport':
      ok = dst.kind === 'lib' || dst.kind === 'core' || configTypes;
      break;
    // The loader checks stage options and requirements: it reads the stage contract in core
    // (and core reads only types of config), never a stage.
    case 'config':
      ok = dst.kind === 'lib' || dst.kind === 'config' || dst.kind === 'core';
      break;
    case 'none':
      return 'is in no layer (lib, core, stages, transport, config, app)';
  }
  if (ok) return null;
  if (to === CONFIG_TYPES && !typeOnly) return 'may import config/types.ts only with `import type`';
  return `may not import ${dst.kind === 'stage' ? `stage "${dst.name}"` : dst.kind}`;
}

interface Import {
  spec: string;
  typeOnly: boolean;
  line: number;
}

function allTypeOnly(elements: ts.NodeArray<ts.ImportSpecifier | ts.ExportSpecifier>): boolean {
  return elements.length > 0 && elements.every((e) => e.isTypeOnly);
}

/** Static imports and re-exports, and import() of a literal: the ones that tie modules together. */
function importsOf(file: string, text: string): Import[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: Import[] = [];
  const add = (specifier: ts.Expression, typeOnly: boolean): void => {
    if (!ts.isStringLiteral(specifier)) return;
    found.push({ spec: specifier.text, typeOnly, line: sf.getLineAndCharacterOfPosition(specifier.getStart(sf)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const typeOnly = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined && named !== undefined && ts.isNamedImports(named) && allTypeOnly(named.elements)));
      add(node.moduleSpecifier, typeOnly);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      const clause = node.exportClause;
      add(node.moduleSpecifier, node.isTypeOnly || (clause !== undefined && ts.isNamedExports(clause) && allTypeOnly(clause.elements)));
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0]) {
      add(node.arguments[0], false);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function sourceFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((entry) => {
      const rel = prefix + entry;
      if (statSync(join(dir, entry)).isDirectory()) return sourceFiles(join(dir, entry), rel + '/');
      return entry.endsWith('.ts') && !entry.endsWith('.d.ts') ? [rel] : [];
    });
}

test('the checker itself: the old tree\'s wrong ways are caught', () => {
  assert.match(violation('core/engine.ts', 'stages/index.ts', false) ?? '', /registry/);
  assert.match(violation('lib/net/matcher.ts', 'stages/smartline/lines.ts', false) ?? '', /stage "smartline"/);
  assert.match(violation('config/load.ts', 'stages/forward/udp.ts', false) ?? '', /stage "forward"/);
  assert.match(violation('stages/records/index.ts', 'stages/smartline/lines.ts', true) ?? '', /stage "smartline"/);
  assert.match(violation('core/stage.ts', 'config/types.ts', false) ?? '', /import type/);
  assert.match(violation('transport/udp.ts', 'app/server.ts', false) ?? '', /top/);
  assert.match(violation('server/engine.ts', 'lib/fnv.ts', false) ?? '', /no layer/);
  assert.equal(violation('core/stage.ts', 'config/types.ts', true), null);
  assert.equal(violation('stages/forward/index.ts', 'stages/forward/udp.ts', false), null);
  assert.equal(violation('stages/index.ts', 'stages/acl/index.ts', false), null);
  assert.equal(violation('app/server.ts', 'stages/index.ts', false), null);
});

test('every relative import in src/ runs down the layers', () => {
  const files = sourceFiles(SRC);
  // A wrong SRC would find nothing and pass; the layers must all be there.
  for (const dir of ['lib/', 'core/', 'stages/', 'transport/', 'config/', 'app/']) {
    assert.ok(files.some((f) => f.startsWith(dir)), `no source files under src/${dir} (reading ${SRC})`);
  }
  const problems: string[] = [];
  for (const file of files) {
    for (const imp of importsOf(file, readFileSync(join(SRC, file), 'utf8'))) {
      if (!imp.spec.startsWith('.')) continue;
      const target = posix.normalize(posix.join(posix.dirname(file), imp.spec)).replace(/\.js$/, '.ts');
      const why = violation(file, target, imp.typeOnly);
      if (why !== null) problems.push(`src/${file}:${imp.line} imports ${imp.spec}${imp.typeOnly ? ' (type only)' : ''}: src/${file} ${why}`);
    }
  }
  assert.deepEqual(problems, [], `layering violations:\n  ${problems.join('\n  ')}`);
});
