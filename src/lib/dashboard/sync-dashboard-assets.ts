import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** A file the dashboard serves. */
export interface SyncDashboardAsset {
  contentType: string;
  body: string;
}

/**
 * The dashboard's files: the page, script and style written for it (in
 * `static/`, copied next to the compiled code) and uPlot's, read from its npm
 * package. Nothing comes from the network, so the page works offline.
 */
const SOURCES: Record<string, { contentType: string; path: () => string }> = {
  'index.html': { contentType: 'text/html; charset=utf-8', path: () => staticFile('index.html') },
  'dashboard.js': {
    contentType: 'text/javascript; charset=utf-8',
    path: () => staticFile('dashboard.js'),
  },
  'dashboard-charts.js': {
    contentType: 'text/javascript; charset=utf-8',
    path: () => staticFile('dashboard-charts.js'),
  },
  'dashboard.css': {
    contentType: 'text/css; charset=utf-8',
    path: () => staticFile('dashboard.css'),
  },
  'uplot.js': {
    contentType: 'text/javascript; charset=utf-8',
    path: () => uplotFile('uPlot.iife.min.js'),
  },
  'uplot.css': { contentType: 'text/css; charset=utf-8', path: () => uplotFile('uPlot.min.css') },
};

function staticFile(name: string): string {
  return join(__dirname, 'static', name);
}

function uplotFile(name: string): string {
  return join(require.resolve('uplot/package.json'), '..', 'dist', name);
}

/** Reads every asset once (they are small) and serves them from memory. */
export class SyncDashboardAssets {
  private readonly cache = new Map<string, SyncDashboardAsset>();

  /** The asset of that name, or undefined for any name not in the fixed list. */
  get(name: string): SyncDashboardAsset | undefined {
    if (!Object.hasOwn(SOURCES, name)) return undefined;
    let asset = this.cache.get(name);
    if (!asset) {
      const source = SOURCES[name];
      asset = { contentType: source.contentType, body: readFileSync(source.path(), 'utf8') };
      this.cache.set(name, asset);
    }
    return asset;
  }

  /** Names of the assets (the page excluded). */
  static readonly names = Object.keys(SOURCES).filter((n) => n !== 'index.html');
}
