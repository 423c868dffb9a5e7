import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import * as ts from 'typescript';

export const PROJECT_ROOT = resolve(__dirname, '..', '..');

function* tsFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* tsFiles(path);
    else if (entry.endsWith('.ts') && !entry.endsWith('.d.ts') && !entry.endsWith('.spec.ts'))
      yield path;
  }
}

/**
 * Transpiles (no type check) the engine, the test device helper and the
 * benchmark into `outDir`, so device processes run plain JavaScript: their
 * memory then holds no TypeScript compiler, only what a deployed service has.
 * Returns the path of the compiled device process entry.
 */
export function buildDeviceProcess(outDir: string): string {
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    esModuleInterop: true,
    allowSyntheticDefaultImports: true,
    sourceMap: false,
  };
  for (const folder of ['src', join('test', 'support'), 'bench']) {
    for (const file of tsFiles(join(PROJECT_ROOT, folder))) {
      const out = join(outDir, relative(PROJECT_ROOT, file)).replace(/\.ts$/, '.js');
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
        compilerOptions: options,
        fileName: file,
      });
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, outputText);
    }
  }
  return join(outDir, 'bench', 'device-process.js');
}
